"""--assign-batch auto: Algorithm 1 up to N_AUTO images, Algorithm 2 above, and the run records which
and why (thresholds patched small, so that both sides of the rule run in a second)."""

import json

import pytest
import torch

from neurosql import NeuroSQL
from neurosql.cli import main
from neurosql.methods import auto_batch, load_model
from neurosql.methods.auto_batch import resolve_assign_batch

TINY = dict(latent_dim=2, width=8, epochs=2, assign_every=1, batch_size=8, val_fraction=0.0, progress=False)
CLI_TINY = ["--epochs", "2", "--assign-every", "1", "--latent-dim", "2", "--width", "8", "--limit", "40",
            "--no-progress", "--no-evaluate"]


@pytest.fixture
def small_threshold(monkeypatch):
    """N_AUTO = 30 and M_AUTO = 8, so that 40 images are 'many'."""
    monkeypatch.setattr(auto_batch, "N_AUTO", 30)
    monkeypatch.setattr(auto_batch, "M_AUTO", 8)


def test_auto_is_algorithm_1_up_to_n_auto_and_algorithm_2_above():
    n = auto_batch.N_AUTO
    assert resolve_assign_batch(None, n) == (0, f"auto: n = {n} <= {n}, Algorithm 1 (full-batch assignment)")
    assert resolve_assign_batch(None, n + 1)[0] == auto_batch.M_AUTO
    assert "Algorithm 2" in resolve_assign_batch(None, n + 1)[1]
    for given in (0, 2, 64):  # a number is kept, whatever n
        assert resolve_assign_batch(given, 10 * n) == (given, f"given: assign_batch = {given}")


@pytest.mark.parametrize("n, expected", [(24, 0), (40, 8)])
def test_fit_resolves_auto_and_the_checkpoint_keeps_what_ran(digits, small_threshold, tmp_path, n, expected):
    model = NeuroSQL(**TINY).fit(digits[:n], checkpoint=tmp_path / "model.pt")
    assert model.config.assign_batch == expected
    assert model.assign_batch_rule_.startswith(f"auto: n = {n} ")
    loaded = load_model(tmp_path / "model.pt")
    assert loaded.config.assign_batch == expected and loaded.assign_batch_rule_ == model.assign_batch_rule_


def test_auto_below_n_auto_is_todays_algorithm_1(digits):
    """The default (auto) on few images trains exactly as assign_batch=0 did."""
    torch.manual_seed(0)
    auto = NeuroSQL(**TINY).fit(digits[:24])
    forced = NeuroSQL(**TINY, assign_batch=0).fit(digits[:24])
    assert torch.equal(auto.codes_, forced.codes_)
    assert all(torch.equal(a, b) for a, b in zip(auto.generator_.state_dict().values(),
                                                 forced.generator_.state_dict().values()))


def test_cli_auto_records_the_resolved_value_and_the_rule(tmp_path, small_threshold):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *CLI_TINY, "--assign-batch", "auto"]) == 0
    run, config = (json.loads((out / name).read_text()) for name in ("run.json", "config.json"))
    assert config["model"]["assign_batch"] is None  # what was asked: a re-run with --config chooses again
    assert run["assign_batch"] == 8 and run["assign_batch_rule"].startswith("auto: n = ")
    assert load_model(out).config.assign_batch == 8
    assert config["model"]["code_noise"] is None and run["code_noise"] == 0.0  # auto code noise: none on images
    assert config["model"]["colour_warmup"] is None and run["colour_warmup"] == 0.0  # auto warm-up: none on grey


def test_cli_given_value_is_recorded_as_given(tmp_path, small_threshold):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *CLI_TINY, "--assign-batch", "0"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["assign_batch"] == 0 and run["assign_batch_rule"] == "given: assign_batch = 0"
