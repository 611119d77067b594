"""Run-directory helpers."""

import pytest

from neurosql.runs import timing_summary


def test_timing_summary_amortises_phases_over_all_epochs():
    # Alg. 2 assigns in every epoch, Alg. 1 every K-th: the log tells which, not K.
    every = [{"time_generator": 2.0, "time_cost": 1.0, "time_assign": 0.5}] * 4
    third = [{"time_generator": 2.0}, {"time_generator": 2.0}, {"time_generator": 2.0, "time_cost": 3.0,
                                                                   "time_assign": 1.5, "time_val": 0.3}]
    assert timing_summary(every)["epoch_s"] == pytest.approx(3.5)
    summary = timing_summary(third)
    assert summary["cost_s_per_epoch_amortised"] == pytest.approx(1.0)
    assert summary["assign_s_per_epoch_amortised"] == pytest.approx(0.5)
    assert summary["epoch_s"] == pytest.approx(3.6)
