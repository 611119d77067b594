"""The neurosql command: a tiny train → sample round trip and clean errors (exit 2)."""

import argparse
import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from neurosql.cli import main

TINY = ["--epochs", "2", "--assign-every", "1", "--latent-dim", "2", "--width", "8", "--limit", "40", "--no-progress"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "demo"
    assert main(["train", "--out", str(out), *TINY]) == 0
    return out


def test_train_writes_a_complete_run_directory(run_dir):
    for name in ("model.pt", "samples.png", "reconstructions.png", "log.csv", "training.png", "config.json", "run.json"):
        assert (run_dir / name).is_file(), name
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["latent_dim"] == 2 and config["data"]["spec"] == "mnist5k"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["environment"]["torch"] and run["parameters"] > 0
    assert "generator_s_per_epoch" in run["timing"]
    assert Image.open(run_dir / "samples.png").size[0] > 28
    assert not list(run_dir.glob("*.tmp"))  # atomic writes leave no temporaries
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if metrics["vgg_reason"] is None:  # ST-LPIPS weights installed (make does): G at the codes is the ceiling
        assert 0 <= metrics["precision_vgg_ceiling"] <= 1 and metrics["fd_vgg_ceiling"] >= 0


def test_limit_counts_training_images_only(tmp_path):
    out = tmp_path / "limit"
    argv = ["--epochs", "1", "--latent-dim", "2", "--width", "8", "--limit", "200", "--no-progress", "--no-evaluate"]
    assert main(["train", "--out", str(out), *argv]) == 0
    run, config = (json.loads((out / name).read_text()) for name in ("run.json", "config.json"))
    assert run["n_train"] == 200 and config["data"]["n_val"] == 20  # val: 10 % of 200, from the val split
    assert "val_loss" in run["final"]


def test_sample_from_checkpoint_is_reproducible(run_dir, tmp_path):
    for name in ("a", "b"):
        assert main(["sample", "--checkpoint", str(run_dir), "-n", "5", "--seed", "3", "--out", str(tmp_path / f"{name}.png")]) == 0
    a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert a.shape == (5, 1, 28, 28) and np.array_equal(a, b)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", *TINY, "--data", "imagenet:/nowhere"], "unknown"),
        (["train", *TINY, "--latent-dim", "0"], "latent-dim"),
        (["train", *TINY, "--momentum", "0"], "momentum"),
        (["train", *TINY, "--assign-every", "0"], "assign-every"),
        (["train", *TINY, "--batch-size", "0"], "batch-size"),
        (["sample", "--checkpoint", "/nonexistent/run"], "not found"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, message, capsys, tmp_path):
    argv = [*argv, "--out", str(tmp_path / "out")] if argv[0] == "train" else argv
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err
    assert not (tmp_path / "out" / "model.pt").exists()


def test_unwritable_output_directory(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["train", "--out", str(blocker / "run"), *TINY]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_corrupt_checkpoint(tmp_path, capsys):
    (tmp_path / "model.pt").write_bytes(b"\0garbage")
    assert main(["sample", "--checkpoint", str(tmp_path)]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_console_script_has_no_traceback_on_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "neurosql", "train", "--latent-dim", "0", "--out", str(tmp_path)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.startswith("error:")


def test_resume_continues_an_interrupted_run(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *TINY, "--epochs", "1", "--no-evaluate"]) == 0
    # Pretend the run was meant to last 3 epochs and was cut after the first.
    from neurosql import NeuroSQL

    model = NeuroSQL.load(out / "model.pt")
    model.config.epochs = 3
    model.budget_ = dataclasses.replace(model.budget_, epochs=3)
    model.save(out / "model.pt")
    assert main(["train", "--resume", str(out), "--no-evaluate"]) == 0
    assert NeuroSQL.load(out / "model.pt").epochs_run_ == 3


def test_run_files_get_the_usual_permissions(run_dir):
    import os
    import stat

    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((run_dir / "samples.png").stat().st_mode) == 0o666 & ~umask


def test_command_options_are_declared_once_with_their_bounds():
    """sample / evaluate / encode read their numbers through declared options: the parser's defaults and
    bounds are the dataclasses', and a value outside them is refused before any file is read."""
    from neurosql.cli import build_parser
    from neurosql.engine.config import EncodeOptions, EvaluateOptions, SampleOptions
    from neurosql.errors import NeuroSQLError

    parser = build_parser()
    assert SampleOptions.from_args(parser.parse_args(["sample", "--checkpoint", "r"])) == SampleOptions()
    given = EvaluateOptions.from_args(parser.parse_args(["evaluate", "--checkpoint", "r", "-n", "50", "--no-downstream"]))
    assert given == EvaluateOptions(num=50, downstream=False)
    for argv, cls in ((["sample", "--checkpoint", "r", "-n", "0"], SampleOptions),
                      (["evaluate", "--checkpoint", "r", "--n-synthetic", "9"], EvaluateOptions),
                      (["encode", "--checkpoint", "r", "--refine-steps", "-2"], EncodeOptions)):
        with pytest.raises(NeuroSQLError, match="must be >="):
            cls.from_args(parser.parse_args(argv))


def test_summary_leads_with_what_sees_sample_quality_and_marks_coarse_knn_numbers(capsys):
    from neurosql.cli import print_metrics
    from neurosql.metrics import ceiling_note

    metrics = {"pfid": 0.5, "precision": 1.0, "precision_vgg": 1.0, "fd_vgg": 0.4, "nn1_accuracy_vgg": 0.93,
               "knn_note": "only 29 held-out images per set"}
    with pytest.warns(UserWarning, match="only 29"):
        print_metrics(metrics)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["nn1_accuracy_vgg", "fd_vgg", "precision_vgg", "pfid", "precision"]
    assert [line.endswith("(coarse: too few test images)") for line in lines] == [False, False, True, False, False]
    assert lines[-1].endswith("(coarse: too few test images; proxy features, blind to mush: read precision_vgg)")
    print_metrics({k: v for k, v in metrics.items() if k != "knn_note"})
    out = capsys.readouterr().out
    assert "coarse" not in out and out.splitlines()[-1].endswith("(proxy features, blind to mush: read precision_vgg)")
    print_metrics({"pfid": 0.5, "precision": 1.0, "nn1_accuracy": 0.5, "nn1_accuracy_vgg": None})  # no VGG twin
    assert "proxy" not in capsys.readouterr().out
    with pytest.warns(UserWarning, match="reconstructions of its training images"):
        print_metrics({"precision_vgg": 0.0, "precision_vgg_ceiling": 0.0, "nn1_accuracy_vgg": 1.0,
                       "nn1_accuracy_vgg_ceiling": 1.0, "ceiling_note": ceiling_note(1.0)})
    assert ceiling_note(1.0, 19) is None and ceiling_note(0.9) is None  # too few images to say; not told apart
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["  nn1_accuracy_vgg       1.0000 (G's reconstructions of training images: 1.00)",
                     "  precision_vgg          0.0000 (G's reconstructions of training images: 0.00)"]


def test_summary_marks_the_memorisation_check_coarse_on_few_held_out_images(capsys):
    """A 3-D run holds out about 15 volumes: the minimum over so few held-out distances is high, so the copy
    fraction reads high (0.60 beside a ratio of 0.86 and no copies in nearest.png); the summary says so."""
    from neurosql.cli import print_metrics

    check = {"memorisation_ratio": 0.86, "copy_fraction": 0.6, "pfid_3d": 1.2}
    print_metrics({**check, "n_memorisation": (64, 120, 15)})
    lines = capsys.readouterr().out.splitlines()
    assert [line.endswith("(coarse: 15 held-out images; open nearest.png)") for line in lines] == [True, True, False]
    print_metrics({**check, "n_memorisation": [64, 120, 20]})  # as read back from metrics.json
    assert "coarse" not in capsys.readouterr().out


def test_summary_marks_a_memorisation_ratio_that_only_blur_lowers(capsys):
    from neurosql.cli import print_metrics

    print_metrics({"memorisation_ratio": 0.6, "memorisation_ratio_2nn": 0.98, "n_memorisation": (200, 160, 40)})
    assert capsys.readouterr().out.splitlines() == [
        "  memorisation_ratio     0.6000 (closer through blur, not copies: see memorisation_ratio_2nn)",
        "  memorisation_ratio_2nn 0.9800"]
    print_metrics({"memorisation_ratio": 0.6, "memorisation_ratio_2nn": 0.85, "n_memorisation": (200, 160, 40)})
    assert "blur" not in capsys.readouterr().out


def test_every_option_help_prints_as_written(capsys):
    """A help text with a literal % (e.g. '64 %') is shown as written, not garbled by argparse's formatting
    (which printed the argument's internals in the middle of the sentence)."""
    from dataclasses import dataclass

    from neurosql.cli import build_parser
    from neurosql.engine.config import add_config_arguments, option

    @dataclass
    class Percent:
        share: float = option(0.5, "raised the share from 64 % to 86 %")

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, Percent)
    assert "from 64 % to 86 % (default: 0.5)" in " ".join(parser.format_help().split())
    for command in ("train", "sample", "evaluate", "encode"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        assert "option_strings" not in capsys.readouterr().out
