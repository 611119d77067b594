"""Algorithm 1 or Algorithm 2: the automatic choice of ``assign_batch`` from the number of images.

Algorithm 1's assignment round builds the n × n cost (float32) and the exact
solver's float64 copy, 12 n² bytes, in time growing as n² against the epoch's n;
Algorithm 2's rounds are m × m per batch, linear in n. ``assign_batch=None``
(``--assign-batch auto``, the default) takes Algorithm 1 up to N_AUTO images and
Algorithm 2 with m = M_AUTO above; 0 forces Algorithm 1, m >= 2 Algorithm 2.
"""

from __future__ import annotations

N_AUTO = 10_000  # benchmarks/alg1_round.md (28 px): at n = 10⁴ a round costs 5.5 generator epochs, 2.8 GB RSS
M_AUTO = 256  # Alg. 2's m above N_AUTO: the paper's largest, and the fastest per image in benchmarks/scaling.md


def resolve_assign_batch(assign_batch: int | None, n: int) -> tuple[int, str]:
    """The assign_batch a fit on n images uses (0 = Algorithm 1, m >= 2 = Algorithm 2), and the
    rule that chose it in words, for the run's record. None is automatic; a number is kept."""
    if assign_batch is not None:
        return assign_batch, f"given: assign_batch = {assign_batch}"
    if n <= N_AUTO:
        return 0, f"auto: n = {n} <= {N_AUTO}, Algorithm 1 (full-batch assignment)"
    return M_AUTO, f"auto: n = {n} > {N_AUTO}, Algorithm 2 with m = {M_AUTO}"

