"""The image validator under each policy its callers use: data for fit, metrics, losses."""

import numpy as np
import pytest
import torch

from neurosql.core.images import check_images, check_values
from neurosql.errors import NeuroSQLError

DATA = dict(dims=(4, 5), min_count=2, add_channel=True, convert=True)  # neurosql.data.check_images
METRICS = dict(dims=(4,), convert=False, slack=1e-3)  # neurosql.metrics._validate.check_images
LOSSES = dict(dims=(4,), min_count=0, from_numpy=False, value_range=False)  # the losses' pair check, per tensor


def test_data_policy_converts_to_float32_in_unit_range():
    x = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    out = check_images(x, **DATA)
    assert out.shape == (2, 1, 3, 3) and out.dtype == torch.float32  # (n, H, W) -> (n, 1, H, W)
    torch.testing.assert_close(out[:, 0], torch.from_numpy(x).float() / 255)
    assert check_images([[[0.0, 1.0]], [[0.5, 0.25]]], **DATA).shape == (2, 1, 1, 2)  # nested lists too
    v = torch.rand(2, 1, 3, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(check_images(v, **DATA), v.float())  # volumes, float64 -> float32


def test_metrics_and_losses_policies_return_the_input_unconverted():
    x = np.random.default_rng(0).random((3, 1, 4, 4))
    out = check_images(x, **METRICS)
    assert out.dtype == torch.float64 and np.shares_memory(out.numpy(), x)  # wrapped, not copied
    t = torch.full((1, 1, 4, 4), 1.0005)  # within the metrics' slack
    assert check_images(t, **METRICS) is t
    bad = torch.full((2, 1, 12, 12), float("nan"))
    assert check_images(bad, **LOSSES) is bad  # losses skip the pass over values
    assert check_images(torch.rand(0, 1, 12, 12), **LOSSES).shape[0] == 0


@pytest.mark.parametrize("policy", [DATA, METRICS], ids=["data", "metrics"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_nan_and_inf_are_refused_where_values_are_checked(policy, value):
    x = torch.rand(3, 1, 4, 4)
    x[1, 0, 2, 2] = value
    with pytest.raises(NeuroSQLError, match="NaN or Inf"):
        check_images(x, **policy)


@pytest.mark.parametrize(
    "policy, value, refused",
    [(DATA, 1.0005, True), (DATA, -1e-6, True), (DATA, 1.0, False), (METRICS, 1.0005, False),
     (METRICS, -5e-4, False), (METRICS, 1.01, True), (METRICS, -0.01, True), (LOSSES, 255.0, False)],
)
def test_range_is_refused_outside_unit_interval_plus_slack(policy, value, refused):
    x = torch.rand(2, 1, 4, 4)
    x[0, 0, 0, 0] = value
    if refused:
        with pytest.raises(NeuroSQLError, match=r"must lie in \[0, 1\], got values in .*scale your data"):
            check_images(x, **policy)
    else:
        check_images(x, **policy)


@pytest.mark.parametrize(
    "policy, x, message",
    [
        (DATA, np.zeros((1, 1, 4, 4)), "need at least 2 images, got 1"),
        (METRICS | {"name": "real", "min_count": 2}, torch.zeros(1, 1, 4, 4), "need at least 2 images in real, got 1"),
        (DATA, np.zeros((4, 4)), r"images must be 4-D \(n, C, H, W\), 3-D \(n, H, W\) or 5-D volumes"),
        (DATA, np.zeros((2, 1, 1, 1, 4, 4)), "got shape"),
        (METRICS, torch.zeros(2, 4, 4), r"must be 4-D \(n, C, H, W\), got shape \(2, 4, 4\)"),  # no added channel
        (METRICS, torch.zeros(2, 1, 4, 4, 4), "4-D"),
        (LOSSES | {"dims": (5,)}, torch.zeros(2, 1, 4, 4), r"5-D volumes \(n, C, D, H, W\)"),
        (DATA, np.zeros((2, 8, 8, 3)), "channels-last"),
        (METRICS, torch.zeros(2, 8, 8, 1), "channels-last"),
        (DATA, np.zeros((2, 1, 4, 4), np.int32), "uint8 or float"),
        (DATA, np.array([["a", "b"]]), "numeric array or tensor"),
        (METRICS, np.zeros((2, 1, 4, 4), np.uint8), r"must be float in \[0, 1\], got torch.uint8"),
        (LOSSES | {"name": "x"}, torch.zeros(2, 1, 4, 4, dtype=torch.int64), "x must be float"),
        (METRICS, [[[[0.5]]]], "must be a torch tensor or numpy array"),
        (LOSSES, np.zeros((2, 1, 4, 4), np.float32), r"must be a torch tensor, 4-D"),
    ],
)
def test_refusals_name_the_problem(policy, x, message):
    with pytest.raises(NeuroSQLError, match=message) as info:
        check_images(x, **policy)
    assert "\n" not in str(info.value)


def test_values_streamed_in_parts_report_the_range_over_all_parts():
    parts = [torch.full((2, 1, 2, 2), 0.5), torch.full((2, 1, 2, 2), 3.0), torch.full((1, 1, 2, 2), -1.0)]
    with pytest.raises(NeuroSQLError, match=r"values in \[-1, 3\]"):
        check_values(iter(parts), name="images")
    check_values(iter(parts[:1]), name="images")
