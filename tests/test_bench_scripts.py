"""The benchmark scripts' data builders, on tiny n (``make bench`` itself takes about half an hour)."""

import sys
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root holds benchmarks/

from benchmarks.assignment import real_costs  # noqa: E402


def test_assignment_cache_builder_records_the_epoch_3_round(tmp_path):
    data = real_costs(48, cache=tmp_path, latent_dim=2, width=8, batch_size=16)
    C, perm = data["cost_prev"].astype(np.float64), data["perm_prev"]
    assert C.shape == data["cost"].shape == (48, 48)
    assert sorted(perm) == list(range(48))
    rows, cols = linear_sum_assignment(C)  # an independent exact solver
    assert np.isclose(C[np.arange(48), perm].mean(), C[rows, cols].mean(), rtol=1e-6)
    assert not np.allclose(data["cost"], data["cost_prev"])  # three more epochs changed G
    stamps = [f.stat().st_mtime_ns for f in sorted(tmp_path.iterdir())]
    assert len(stamps) == 3
    again = real_costs(48, cache=tmp_path)  # served from the cache, nothing rebuilt
    assert [f.stat().st_mtime_ns for f in sorted(tmp_path.iterdir())] == stamps
    assert np.array_equal(again["perm_prev"], perm)
