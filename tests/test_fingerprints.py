"""Refactors keep results: fixed-seed runs of every method (2-D and 3-D, Algorithms 1 and 2, colour,
two gloo processes) must give the checkpoint tensors and samples recorded in
``fixtures/fingerprints.json``, which was written before the code-bank refactor (issue 24).

A fingerprint of a tensor is its shape with its sum, absolute sum and sum of squares in float64;
any change of what training computes moves them far beyond the tolerance, which absorbs last-bit
differences. Four epochs amplify the last bits of another CPU's kernels (AVX-512 against AVX2: the
DDPM's weights moved by 5 %, one NeuroSQL code sum by 6e-5), so each recorded fingerprint names the
kinds of CPU it was seen on (torch's dispatch level, ``torch.backends.cpu.get_cpu_capability()``),
and a run is held to its own kind's. A case with no fingerprint of this kind is skipped, not passed.

After a change that is meant to alter results, or on a new kind of CPU, run
``python tests/test_fingerprints.py --record``: a case this machine still reproduces gains this
kind; a case it no longer reproduces keeps only this machine's fingerprint (the other kinds' are
then stale, and those machines skip it until they record it on unchanged code).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from neurosql.persistence import load_checkpoint

FIXTURE = Path(__file__).parent / "fixtures" / "fingerprints.json"
BUDGET = dict(epochs=4, batch_size=8, lr=3e-3, progress=False, seed=3, val_fraction=0.25)
BACKBONE = dict(latent_dim=3, width=8)
CASES = {  # name -> (method, data, parameters)
    "neurosql-alg1": ("neurosql", "digits", dict(assign_every=1)),
    "neurosql-alg2": ("neurosql", "digits", dict(assign_every=1, assign_batch=8)),
    "neurosql-alg2-once": ("neurosql", "digits", dict(assign_every=2, assign_batch=8, assign_every_batch=False,
                                                      lattice_subset="random", init="random")),
    "neurosql-prior-no-ema": ("neurosql", "digits", dict(assign_every=2, sampler="prior", ema=0.0)),
    "neurosql-rgb": ("neurosql", "rgb", dict(assign_every=1, loss="ssim_l1_yuv")),
    "neurosql-3d": ("neurosql", "volumes", dict(assign_every=1, code_noise=0)),
    "neurosql-3d-code-noise": ("neurosql", "volumes", dict(assign_every=1)),  # auto: 0.25 on volumes
    "vae": ("vae", "digits", {}),
    "gan": ("gan", "digits", dict(disc_width=8, encode_steps=3)),
    "ddpm": ("ddpm", "digits", dict(denoiser_width=8, timesteps=50, sample_steps=5)),
    "vae-3d": ("vae", "volumes", dict(encoder_hidden=16)),
}
DISTRIBUTED = {"neurosql-gloo-alg1": 0, "neurosql-gloo-alg2": 8}
TORCHRUN_SCRIPT = """
import os, sys, torch, torch.distributed as dist
from neurosql import NeuroSQL
from neurosql.data import load_data
X = load_data(None, "train", limit=48, progress=False).images
NeuroSQL(latent_dim=2, width=8, epochs=4, assign_every=1, batch_size=8, lr=1e-2, progress=False, seed=0,
         val_fraction=0.25, assign_batch=int(sys.argv[2])).fit(X, checkpoint=sys.argv[1])
dist.destroy_process_group()
sys.stdout.flush(); sys.stderr.flush()
os._exit(0)
"""


def data(kind: str) -> torch.Tensor:
    """Small seeded training sets: 40 real digits, 40 RGB 16-px blobs, 24 16³ ellipsoids."""
    from neurosql.data import load_data

    rng = np.random.default_rng(0)
    if kind == "digits":
        return load_data(None, "train", limit=40, progress=False).images
    if kind == "rgb":
        t = np.linspace(-1, 1, 16)
        yy, xx = np.meshgrid(t, t, indexing="ij")
        out = np.zeros((40, 3, 16, 16), np.float32)
        for i in range(40):
            cy, cx, r = rng.uniform(-0.4, 0.4, 2).tolist() + [rng.uniform(0.3, 0.6)]
            out[i] = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r) * rng.uniform(0.1, 1.0, (3, 1, 1))
        return torch.from_numpy(out)
    t = (np.arange(16) + 0.5) / 16 - 0.5
    d, h, w = np.meshgrid(t, t, t, indexing="ij")
    out = np.zeros((24, 1, 16, 16, 16), np.float32)
    for i in range(24):
        c, r = rng.uniform(-0.1, 0.1, 3), rng.uniform(0.2, 0.4, 3)
        out[i, 0] = (((d - c[0]) / r[0]) ** 2 + ((h - c[1]) / r[1]) ** 2 + ((w - c[2]) / r[2]) ** 2 <= 1) * 0.9
    return torch.from_numpy(out)


def tensors(obj, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor in a nested checkpoint, by its key path."""
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    out = {}
    for key, value in items:
        out.update(tensors(value, f"{prefix}/{key}"))
    return out


def fingerprint(state: dict, samples: torch.Tensor) -> dict[str, list]:
    """Shape, sum, absolute sum and sum of squares of every checkpoint tensor, of the epoch log's
    losses and assignment statistics (not its timings), and of the samples."""
    logged = [v for row in state["extra"]["log"] for k, v in sorted(row.items()) if not k.startswith("time")]
    found = {**tensors(state), "log": torch.tensor(logged, dtype=torch.float64), "samples": samples}
    out = {}
    for key, t in sorted(found.items()):
        t = t.detach().cpu().to(torch.float64)
        out[key] = [list(t.shape), float(t.sum()), float(t.abs().sum()), float((t * t).sum())]
    return out


def run_case(name: str, tmp: Path) -> dict:
    """Fit the case, save it, and fingerprint the saved checkpoint with 6 samples of the reloaded model."""
    from neurosql.methods import build_method, load_model

    method, kind, params = CASES[name]
    torch.set_num_threads(1)
    model = build_method(method, **BUDGET, **BACKBONE, **params).fit(data(kind))
    path = model.save(tmp / f"{name}.pt")
    return fingerprint(load_checkpoint(path), load_model(path).sample(6, seed=5))


def run_distributed(name: str, tmp: Path) -> dict:
    """Two gloo processes under torchrun, then the saved checkpoint and its samples in this process."""
    from neurosql.methods import load_model
    from test_distributed import torchrun

    script, path = tmp / "fit.py", tmp / f"{name}.pt"
    script.write_text(TORCHRUN_SCRIPT)
    torchrun(script, path, DISTRIBUTED[name])
    return fingerprint(load_checkpoint(path), load_model(path).sample(6, seed=5))


def assert_same(found: dict, expected: dict) -> None:
    assert sorted(found) == sorted(expected), "the checkpoint's tensors changed"
    for key, (shape, *stats) in expected.items():
        assert found[key][0] == shape, key
        np.testing.assert_allclose(found[key][1:], stats, rtol=1e-5, atol=1e-6, err_msg=key)


def cpu_kind() -> str:
    """The kind of CPU a fingerprint belongs to: torch's kernel dispatch level (e.g. AVX2, AVX512)."""
    return torch.backends.cpu.get_cpu_capability()


def recorded(name: str) -> list[dict]:
    """The fingerprints of case ``name`` seen on CPUs of this machine's kind."""
    return [v["tensors"] for v in json.loads(FIXTURE.read_text())[name] if cpu_kind() in v["cpus"]]


def assert_recorded(found: dict, name: str) -> None:
    """``found`` is this kind of CPU's recorded fingerprint of ``name`` (skipped when there is none)."""
    variants = recorded(name)
    if not variants:
        pytest.skip(f"no fingerprint of {name} recorded on a {cpu_kind()} CPU; on code that gives the "
                    "recorded results elsewhere, run python tests/test_fingerprints.py --record")
    for variant in variants[1:]:
        try:
            return assert_same(found, variant)
        except AssertionError:
            pass
    assert_same(found, variants[0])


@pytest.mark.parametrize("name", list(CASES))
def test_fixed_seed_runs_keep_their_fingerprints(name, tmp_path):
    assert_recorded(run_case(name, tmp_path), name)


@pytest.mark.parametrize("name", list(DISTRIBUTED))
def test_two_process_runs_keep_their_fingerprints(name, tmp_path):
    assert_recorded(run_distributed(name, tmp_path), name)


def test_the_fingerprint_sees_a_one_step_change(tmp_path):
    """The tolerance is far below what one more generator update moves."""
    from neurosql.methods import build_method

    method, kind, params = CASES["neurosql-alg1"]
    model = build_method(method, **{**BUDGET, "epochs": 5}, **BACKBONE, **params).fit(data(kind))
    path = model.save(tmp_path / "more.pt")
    found = fingerprint(load_checkpoint(path), model.sample(6, seed=5))
    with pytest.raises(AssertionError):
        assert_recorded(found, "neurosql-alg1")


def test_recording_keeps_each_kind_of_cpu_until_the_results_change():
    """A reproduced case gains the kind; a new kind is appended; a changed result drops the stale kinds."""
    one, other = {"a": [[2], 1.0, 1.0, 1.0]}, {"a": [[2], 2.0, 2.0, 2.0]}
    cases = {"c": [{"cpus": ["AVX2"], "tensors": one}]}
    assert record(cases, "c", one, "AVX512") == [{"cpus": ["AVX2", "AVX512"], "tensors": one}]
    cases = {"c": [{"cpus": ["AVX2"], "tensors": one}]}
    assert record(cases, "c", other, "AVX512") == [{"cpus": ["AVX2"], "tensors": one},
                                                   {"cpus": ["AVX512"], "tensors": other}]
    cases = {"c": [{"cpus": ["AVX2", "AVX512"], "tensors": one}]}
    assert record(cases, "c", other, "AVX512") == [{"cpus": ["AVX512"], "tensors": other}]
    assert record({}, "c", one, "AVX2") == [{"cpus": ["AVX2"], "tensors": one}]


def record(cases: dict, name: str, found: dict, kind: str) -> list[dict]:
    """Case ``name``'s variants after this machine (``kind``) found ``found``: the matching variant
    gains ``kind``; with none matching, ``kind`` is appended if it had no fingerprint, and otherwise
    the results changed and ``found`` replaces every kind's."""
    variants = cases.get(name, [])
    for variant in variants:
        try:
            assert_same(found, variant["tensors"])
        except AssertionError:
            continue
        variant["cpus"] = sorted({*variant["cpus"], kind})
        return variants
    if any(kind in v["cpus"] for v in variants):
        return [{"cpus": [kind], "tensors": found}]
    return [*variants, {"cpus": [kind], "tensors": found}]


def write_fixture(cases: dict) -> None:
    """The fixture with a tensor a line, so that diffs show which one moved."""
    def variant(v: dict) -> str:
        lines = ",\n".join(f"    {json.dumps(k)}: {json.dumps(t)}" for k, t in v["tensors"].items())
        return f'  {{"cpus": {json.dumps(v["cpus"])}, "tensors": {{\n{lines}\n  }}}}'
    body = ",\n".join(f" {json.dumps(name)}: [\n" + ",\n".join(map(variant, vs)) + "\n ]" for name, vs in cases.items())
    FIXTURE.write_text("{\n" + body + "\n}\n")


if __name__ == "__main__" and "--record" in sys.argv:
    import tempfile

    sys.path.insert(0, str(Path(__file__).parent))
    with tempfile.TemporaryDirectory() as tmp:
        prints = {name: run_case(name, Path(tmp)) for name in CASES}
        prints.update({name: run_distributed(name, Path(tmp)) for name in DISTRIBUTED})
    cases = json.loads(FIXTURE.read_text()) if FIXTURE.is_file() else {}
    before = json.dumps(cases)
    cases = {name: record(cases, name, found, cpu_kind()) for name, found in prints.items()}
    write_fixture(cases)
    print(f"recorded {len(cases)} cases on a {cpu_kind()} CPU in {FIXTURE}"
          + (" (unchanged)" if json.dumps(cases) == before else ""))
