"""The shared training utilities: schedule, clipping, early stopping, RNG state, batching."""

import math
import random

import numpy as np
import pytest
import torch

from neurosql.errors import NeuroSQLError
from neurosql.engine.config import (AUTO_EPOCHS, AUTO_MIN_STEPS_VOLUMES, AUTO_STEPS, Budget, TrainConfig,
                                   auto_batch_size, resolve_device)
from neurosql.engine.training import (
    EarlyStopping,
    EpochLog,
    Optimization,
    WeightAverage,
    batches,
    lr_factor,
    rng_state,
    set_rng_state,
)


def test_cosine_schedule_decays_to_floor_and_restarts():
    cfg = TrainConfig(epochs=4, lr=1e-3, restart_epochs=2, warmup=0.0)
    p = torch.nn.Parameter(torch.zeros(3))
    opt = Optimization([p], cfg, Budget(batch_size=1, steps_per_epoch=5, epochs=4))
    lrs = []
    for _ in range(20):
        opt.step((p - 1).pow(2).sum())
        lrs.append(opt.lr)
    # lrs[t] is the rate of update t: the schedule restarts after 2 epochs = 10 updates.
    assert lrs[0] == pytest.approx(1e-3) and lrs[10] == pytest.approx(1e-3)
    assert min(lrs[:10]) < 2e-4
    assert all(a >= b for a, b in zip(lrs[:10], lrs[1:10]))  # monotone within a period
    assert opt.updates == 20


def test_clipping_bounds_the_update():
    cfg = TrainConfig(lr=1.0, weight_decay=0.0, grad_clip=0.5)
    p = torch.nn.Parameter(torch.zeros(4))
    opt = Optimization([p], cfg, cfg.budget(1))
    norm = opt.step((p * 1000).sum())
    assert norm == pytest.approx(2000.0)
    assert p.grad.norm() == pytest.approx(0.5, rel=1e-5)


def test_early_stopping_counts_epochs_since_best():
    stop = EarlyStopping(patience=3)
    assert stop.update(1, 1.0) and not stop.update(2, 1.5)
    assert not stop.should_stop(3) and stop.should_stop(4)
    assert stop.update(5, 0.5) and stop.best_epoch == 5
    blind = EarlyStopping(patience=3)  # no validation images: nothing to stop on
    assert not any(blind.should_stop(epoch) for epoch in range(1, 100))
    off = EarlyStopping(patience=None)  # the default: the whole budget, no best weights kept
    assert not off.update(1, 1.0) and not off.update(2, 0.5) and off.best == 0.5
    assert not any(off.should_stop(epoch) for epoch in range(1, 100))


def test_a_run_without_validation_trains_its_whole_budget(digits):
    from neurosql import NeuroSQL

    model = NeuroSQL(latent_dim=2, width=8, epochs=30, patience=2, val_fraction=0, assign_every=5,
                     progress=False).fit(digits[:16])
    assert model.epochs_run_ == 30 and "val_loss" not in model.log_.rows[-1]


def test_rng_state_round_trip_reproduces_draws():
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    state = rng_state()
    first = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(state)
    second = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1]) and first[2] == second[2]


def test_batches_cover_every_index_once_and_avoid_singletons():
    parts = batches(65, 32, torch.Generator().manual_seed(0))
    assert sorted(torch.cat(parts).tolist()) == list(range(65))
    assert min(len(p) for p in parts) > 1


@pytest.mark.parametrize(
    "kwargs", [{"epochs": -1}, {"steps": -5}, {"batch_size": -1}, {"epochs": 3, "steps": 100}, {"lr": 0.0},
               {"warmup": 1.0}, {"ema": 1.0}, {"ema": -0.1}, {"val_fraction": 1.0}, {"device": "tpu"}]
)
def test_bad_config_is_rejected(kwargs):
    with pytest.raises(NeuroSQLError):
        TrainConfig(**kwargs).validate()


def machine(monkeypatch, gpus: int, mps: bool) -> None:
    """Pretend to be a machine with ``gpus`` CUDA devices and/or Apple's MPS."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize("gpus, mps, expected", [(2, True, "cuda"), (1, False, "cuda"), (0, True, "mps"),
                                                 (0, False, "cpu")])
def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, gpus, mps, expected):
    """The test machine has no GPU and no MPS: the availability checks are patched, not exercised."""
    machine(monkeypatch, gpus, mps)
    assert resolve_device("auto") == torch.device(expected)


@pytest.mark.parametrize("name, gpus, mps, message", [
    ("cuda", 0, True, "CUDA is not available"),
    ("cuda:3", 1, False, "has 1 CUDA device(s), cuda:0 to cuda:0"),
    ("cuda:1", 1, False, "has 1 CUDA device(s)"),
    ("mps", 2, False, "MPS (Apple silicon) is not available"),
    ("mps:1", 0, True, "unknown device"),
    ("meta", 0, False, "unknown device"),
    ("tpu9", 0, False, "unknown device"),
])
def test_unavailable_devices_are_clear_errors(monkeypatch, name, gpus, mps, message):
    """Availability patched as above (no GPU here)."""
    machine(monkeypatch, gpus, mps)
    with pytest.raises(NeuroSQLError) as info:
        resolve_device(name)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name, expected", [("cuda:1", "cuda:1"), ("cuda", "cuda"), ("mps", "mps"), ("cpu", "cpu")])
def test_present_devices_are_accepted(monkeypatch, name, expected):
    """Availability patched (no GPU here): two GPUs and MPS; nothing is allocated on them."""
    machine(monkeypatch, 2, True)
    assert resolve_device(name) == torch.device(expected)


def test_epoch_log_csv_has_union_of_columns(tmp_path):
    log = EpochLog()
    log.append({"epoch": 1, "train_loss": 0.5})
    log.append({"epoch": 2, "train_loss": 0.4, "val_loss": 0.6})
    text = log.write_csv(tmp_path / "log.csv").read_text().splitlines()
    assert text[0] == "epoch,train_loss,val_loss"
    assert text[1] == "1,0.5," and text[2] == "2,0.4,0.6"
    assert not math.isnan(float(text[2].split(",")[2]))


def test_single_cosine_decay_ends_near_the_floor():
    cfg = TrainConfig(epochs=3, lr=1e-3)
    p = torch.nn.Parameter(torch.zeros(2))
    opt = Optimization([p], cfg, Budget(batch_size=1, steps_per_epoch=4, epochs=3))
    for _ in range(12):
        opt.step(p.pow(2).sum())
    assert opt.lr < 1e-4  # no restart at the very end of the run


def test_warmup_rises_linearly_then_cosine_decays_to_one_percent():
    budget = Budget(batch_size=8, steps_per_epoch=10, epochs=10)  # 100 updates, 10 of warm-up
    f = [lr_factor(t, budget, warmup=0.1) for t in range(100)]
    assert f[:10] == pytest.approx([(t + 1) / 10 for t in range(10)])
    assert f[10] == pytest.approx(1.0)
    # the cosine part follows its closed form over the 90 remaining updates
    assert f[55] == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert all(a >= b for a, b in zip(f[10:], f[11:])) and f[-1] < 0.02


@pytest.mark.parametrize("n, expected", [(20, 8), (50, 8), (90, 8), (200, 8), (255, 8), (256, 16), (270, 16),
                                         (300, 16), (900, 16), (1800, 16), (60000, 16)])
def test_auto_batch_size_is_n_over_16_as_a_power_of_two_at_most_16(n, expected):
    assert auto_batch_size(n) == expected


def test_auto_budget_gives_small_sets_enough_updates_and_caps_large_ones():
    for n in (20, 45, 90, 270, 900):
        b = TrainConfig().budget(n)
        # a sane batch, at least ~a dozen updates per epoch once n allows it, and the update floor
        assert 2 <= b.batch_size <= max(8, n // 8)
        assert b.steps >= AUTO_STEPS[0] and b.steps < AUTO_STEPS[0] + b.steps_per_epoch
    large = TrainConfig().budget(60_000)
    assert large.batch_size == 16 and AUTO_STEPS[1] <= large.steps < AUTO_STEPS[1] + large.steps_per_epoch
    per_epoch = AUTO_STEPS[0] // AUTO_EPOCHS + 10  # AUTO_EPOCHS epochs of these lie between the floor and the cap
    mid = TrainConfig().budget(16 * per_epoch)
    assert (mid.epochs, mid.steps_per_epoch) == (AUTO_EPOCHS, per_epoch)


def test_auto_budget_gives_volumes_the_higher_floor_and_explicit_budgets_win():
    for n in (20, 180, 900):
        images, volumes = TrainConfig().budget(n), TrainConfig().budget(n, volumes=True)
        assert images.batch_size == volumes.batch_size and images.steps < AUTO_MIN_STEPS_VOLUMES
        assert AUTO_MIN_STEPS_VOLUMES <= volumes.steps < AUTO_MIN_STEPS_VOLUMES + volumes.steps_per_epoch
    assert TrainConfig(steps=500, batch_size=16).budget(100, volumes=True).steps == 504
    assert TrainConfig(epochs=7, batch_size=16).budget(100, volumes=True) == Budget(16, 7, 7)


def test_explicit_budget_is_used_as_given():
    assert TrainConfig(epochs=7, batch_size=16).budget(100) == Budget(16, 7, 7)
    b = TrainConfig(steps=500, batch_size=16).budget(100)  # ceil(100/16) = 7 updates per epoch
    assert b.epochs == 72 and b.steps == 504
    assert TrainConfig(epochs=2).budget(100, batch_size=10) == Budget(10, 10, 2)


def test_weight_average_follows_its_recursion_and_swaps_back():
    net = torch.nn.Linear(2, 1)
    average = WeightAverage(net, decay=0.5)
    expected = net.weight.detach().clone()
    with torch.no_grad():
        for t, value in enumerate((1.0, 3.0, 5.0, 7.0)):
            net.weight.fill_(value)
            average.update()
            beta = min(0.5, (1 + t) / (10 + t))  # 0.1, 0.18, 0.25, 0.31 → 0.5 cap not reached
            expected = beta * expected + (1 - beta) * value
    assert torch.allclose(average.average["weight"], expected)
    with average.applied():
        assert torch.allclose(net.weight, expected)
    assert (net.weight == 7.0).all()  # its own weights are back after the block


# ------------------------------------------------------- declared config fields
def test_interval_membership_and_wording():
    from neurosql.engine.config import Interval

    cases = {"(0, 1]": (0.5, [1.0], [0.0, 1.5]), "[1, inf)": (3, [1], [0, 0.5]), "[0, 1)": (0.0, [0.999], [1.0, -0.1])}
    for text, (inside, edge_in, outside) in cases.items():
        interval = Interval.parse(text)
        assert inside in interval and all(v in interval for v in edge_in)
        assert not any(v in interval for v in outside), text
    assert str(Interval.parse("(0, 1]")) == "in (0, 1]" and str(Interval.parse("[1, inf)")) == ">= 1"
    assert str(Interval.parse("(0, inf)")) == "> 0"
    with pytest.raises(ValueError):
        Interval.parse("0 to 1")


def _configs():
    from neurosql.methods import CONFIGS

    return list(CONFIGS.values())


@pytest.mark.parametrize("cls", _configs(), ids=lambda c: c.__name__)
def test_every_numeric_field_declares_its_bounds_and_refuses_nan_and_inf(cls):
    """One declaration per field, checked by one function: a number without bounds would be unchecked."""
    from dataclasses import fields

    from neurosql.engine.config import check_config

    for f in fields(cls):
        kind = f.metadata.get("type", type(f.default))
        if kind in (int, float):
            assert "within" in f.metadata, f"{cls.__name__}.{f.name} declares no interval"
        if kind is float:
            for bad in (float("nan"), float("inf"), -float("inf")):
                with pytest.raises(NeuroSQLError, match=f.name.replace("_", "-")):
                    check_config(cls(**{f.name: bad}))
        if "choices" in f.metadata:
            with pytest.raises(NeuroSQLError, match=f"unknown {f.name.replace('_', '-')} 'nosuch'"):
                check_config(cls(**{f.name: "nosuch"}))
    check_config(cls())  # the defaults pass
