"""The benchmark scripts' data builders, on tiny n (``make bench`` and ``make quality`` themselves take 10 minutes to an hour)."""

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


def test_small_data_table_compares_defaults_with_the_grid_and_averages_seeds(tmp_path):
    from benchmarks.small_data import GRID, key, write_table

    def result(params, seed, pfid):
        return {"set": "faces@32", "params": params, "seed": seed, "n_train": 80, "pfid": pfid, "kid": 0.01,
                "precision": 0.9, "recall": 0.5, "recon_ssim": 0.9, "wall_s": 30.0, "updates": 1000,
                "resolved": {"lr": 2e-3, "batch_size": 8, "epochs": 100}}

    runs = [({}, 0, 0.6), ({}, 1, 0.8), ({}, 2, 1.0), (GRID[0], 0, 0.5), (GRID[1], 0, 0.4), (GRID[1], 1, 0.9)]
    results = {key("faces@32", p, s): result(p, s, f) for p, s, f in runs}
    assert len(results) == len(runs)  # seeds are part of the key
    write_table(results, tmp_path / "t.md")
    text = (tmp_path / "t.md").read_text()
    assert "| faces@32 | | defaults / best pFID | | **1.50×** |" in text  # seed 0: 0.6 against the grid's 0.4
    assert "| faces@32 | 80 | defaults | 0.002 · 8 · 1000 | 0.600 |" in text
    assert "| faces@32 | 80 | best of grid | 0.002 · 8 · 1000 | 0.400 |" in text
    assert "| faces@32 | defaults | 3 | 1000 | 0.800 ± 0.200 |" in text  # the mean ± sd over seeds 0-2
    assert "0.650 ± 0.354" in text and text.count(" ± ") == 1 + 2 * 5  # the title, two configurations × 5 metrics


def test_small_data_quality_table_puts_samples_beside_prior_draws_and_reconstructions(tmp_path):
    from benchmarks.small_data import key, write_table

    def result(seed, fd, prior_fd):
        quality = {"pfid": 0.5, "kid": 0.01, "precision": 0.9, "recall": 0.5, "fd_vgg": fd, "precision_vgg": 0.7,
                   "recall_vgg": 0.6, "memorisation_ratio": 0.9, "memorisation_ratio_2nn": 0.95 + seed / 50,
                   "copy_fraction": 0.0, "nn1_accuracy_vgg": 0.5 + seed / 10, "nn1_fake_vgg": 0.8}
        return {"set": "brain@64", "params": {}, "seed": seed, "n_train": 200, "recon_ssim": 0.9, "wall_s": 60.0,
                "updates": 2000, **quality, **{f"prior_{k}": v for k, v in quality.items()}, "prior_fd_vgg": prior_fd,
                "recon_fd_vgg": 0.5, "fit_nn1_accuracy_vgg": 0.6, "fit_nn1_fake_vgg": 0.7,
                "resolved": {"lr": 2e-3, "batch_size": 8, "epochs": 80, "latent_dim": 16, "sampler": "codes"}}

    results = {key("brain@64", {}, s): result(s, fd, pf) for s, fd, pf in ((0, 0.8, 2.0), (1, 1.2, 3.0))}
    write_table(results, tmp_path / "t.md")
    text = (tmp_path / "t.md").read_text()
    assert ("| brain@64 | defaults | 16 | codes | 2 | 0.55 / 0.80 | 0.60 / 0.70 | 0.500 | 1.000 | 2.00 | 0.70 | 0.60 | "
            "0.90 / 0.96 | 0.00 |") in text
    assert "| brain@64 | defaults | 16 | prior (paper) | 2 | 0.55 / 0.80 | 0.60 / 0.70 | 0.500 | 2.500 | 5.00 |" in text
    del results[key("brain@64", {}, 1)]["nn1_accuracy_vgg"]  # a run from before the 1-NN test
    write_table(results, tmp_path / "t.md")
    assert "| codes | 2 | nan / 0.80 |" in (tmp_path / "t.md").read_text()


def test_training_path_case_reads_the_fits_phases():
    """The quick training-path case runs both fits and reports each target's ratio from their logs."""
    from benchmarks.cost_matrix import TRAIN_TARGETS, blob_images, training_path

    X = blob_images(5, 64, 0)
    assert X.shape == (5, 1, 64, 64) and 0 <= X.min() and X.max() <= 1 and X.std() > 0.1
    rows = training_path(quick=True)
    assert [r["name"] for r in rows] == ["training_round_vs_generator_epoch_64px", "training_validation_vs_round_64px",
                                         "training_validation_vs_round_no_average_64px"]
    phases = rows[0]["phases"]
    assert all(v > 0 for p in phases.values() for v in p.values())
    assert rows[0]["ratio"] == phases["ema"]["round_s"] / phases["ema"]["generator_epoch_s"]
    assert rows[2]["ratio"] == phases["no_average"]["validation_s"] / phases["no_average"]["round_s"]
    assert [r["target"] for r in rows[:2]] == list(TRAIN_TARGETS.values())


def test_archive_images_are_seeded_shifts_of_the_training_digits(tmp_path):
    from benchmarks.archive import SHIFT, shifted_digits
    from neurosql.data import load_data

    digits = (load_data(None, "train", progress=False).images.numpy() * 255).round().astype(np.uint8)
    X = np.load(shifted_digits(len(digits) + 3, tmp_path / "x.npy"))
    assert X.shape == (len(digits) + 3, 1, 28, 28) and X.dtype == np.uint8
    shifts = range(-SHIFT, SHIFT + 1)
    for i in (0, 1, len(digits) - 1, len(digits) + 2):  # the last wraps around to digit 2
        source = digits[i % len(digits)]
        assert any(np.array_equal(X[i], np.roll(source, (a, b), axis=(-2, -1))) for a in shifts for b in shifts)
    assert np.array_equal(X, np.load(shifted_digits(len(digits) + 3, tmp_path / "again.npy")))  # seeded
    assert not np.array_equal(X[: len(digits)], digits)  # shifted, not copied


def test_scaling_plot_adds_the_single_process_archive_rows(tmp_path):
    from benchmarks.scaling import plot

    sweep = [dict(method="vae", m=None, n=n, epoch_s=n / 1e3, s_per_1k_samples=1.0, peak_rss_mb=500.0) for n in (10, 20)]
    archive = [dict(method=method, n=n, m=256, processes=p, images_per_s=100.0, peak_rss_mb=900.0)
               for method in ("neurosql", "vae") for n in (100, 1000) for p in (1, 2)]
    plot(sweep, tmp_path / "scaling.png", archive)
    assert (tmp_path / "scaling.png").stat().st_size > 0


def test_archive_table_counts_the_processes():
    from benchmarks.archive import table

    row = dict(method="neurosql", n=10_000, m=256, processes=2, updates=80, images_per_s=300.0,
               assignment_share=0.25, pfid=1.0, peak_rss_mb=800.0)
    assert "| neurosql | 10,000 | 256 | 2 | 80 | 300 | 25.0% | 1.000 | 800 |" in table([row])


def test_phantom_slices_are_seeded_middle_slices_with_skull_brain_and_ventricles():
    from benchmarks.phantoms3d import phantoms
    from benchmarks.user_sets import phantom_slices

    slices = phantom_slices(6, size=32, seed=3)
    assert slices.shape == (6, 1, 32, 32) and slices.dtype == np.float32
    np.testing.assert_array_equal(slices, phantom_slices(6, size=32, seed=3))
    heads, _ = phantoms(6, 32, 3)
    for head, image in zip(heads, slices[:, 0]):  # each is one axial slice of its head, near the middle
        depth = [d for d in range(32) if np.array_equal((head[d] / 255.0).astype(np.float32), image)]
        assert any(abs(d - 16) <= 2 for d in depth)
    levels = np.unique(np.round(slices, 2))
    assert 0.0 in levels and 0.95 in levels and 0.1 in levels  # background, skull, ventricles


def test_anatomy_counter_passes_real_phantoms_and_fails_blurred_skull_less_or_one_blob_heads():
    import torch
    from scipy import ndimage

    from benchmarks.phantoms3d import anatomy, anatomy_share, phantoms

    heads = phantoms(40, 32, 11)[0] / 255.0
    assert anatomy_share(torch.from_numpy(heads[:, None]))["anatomy"] >= 0.95  # a few have touching ventricles
    whole = [v for v in heads if all(anatomy(v))]
    blurred = [anatomy(ndimage.gaussian_filter(v, 1.5)) for v in whole]  # a soft head: no shell, ventricles filled
    assert not any(skull for skull, _, _ in blurred) and sum(ventricles for _, _, ventricles in blurred) <= 2
    assert anatomy(np.where(whole[0] > 0.9, 0.5, whole[0]))[0] is False  # the skull turned brain-grey
    assert anatomy(np.zeros((32, 32, 32))) == (False, False, False)
    one_blob = whole[0].copy()
    one_blob[one_blob < 0.25] = 0.0  # background and ventricles to 0, then the ventricles back as brain ...
    one_blob[ndimage.binary_fill_holes(one_blob > 0) & (one_blob == 0)] = 0.5
    t = np.arange(32) - 15.5
    ball = (t[:, None, None] ** 2 + t[None, :, None] ** 2 + t[None, None, :] ** 2) <= 16  # ... and one blob in the middle
    one_blob[ball] = 0.1
    assert anatomy(one_blob) == (True, True, False)
    noisy = np.clip(np.stack(whole) + np.random.default_rng(0).normal(0, 0.1, (len(whole), 32, 32, 32)), 0, 1)
    assert anatomy_share(torch.from_numpy(noisy[:, None]))["anatomy"] >= 0.9  # noise leaves the anatomy


def test_write_set_writes_the_images_as_pngs_the_folder_loader_reads_back(tmp_path):
    import torch
    from benchmarks.small_data import SETS
    from benchmarks.write_set import write_set
    from neurosql.data import load_data

    train, test = torch.rand(5, 3, 8, 8), torch.rand(2, 3, 8, 8)
    SETS["tiny-rgb"] = lambda: (train, test)
    try:
        assert write_set("tiny-rgb", tmp_path / "train") == 5
        assert write_set("tiny-rgb", tmp_path / "test", test=True) == 2
    finally:
        del SETS["tiny-rgb"]
    for images, folder in ((train, "train"), (test, "test")):
        back = load_data(f"folder:{tmp_path / folder}", "all", progress=False).images  # file-name order
        torch.testing.assert_close(back, (images * 255).round() / 255, atol=1e-6, rtol=0)


def test_vgg_calibration_scores_real_images_well_and_blurred_ones_worse(tmp_path):
    import json

    import pytest

    from neurosql.metrics import stlpips_available
    from benchmarks.vgg_calibration import BLURS, main

    if not stlpips_available()[0]:
        pytest.skip("ST-LPIPS weights unavailable")
    main(["--sets", "faces@32", "--out", str(tmp_path / "cal"), "--threads", "1"])
    rows = json.loads((tmp_path / "cal.json").read_text())
    assert [r["blur_px"] for r in rows] == list(BLURS) and rows[0]["n"] == 20
    fd = [r["fd_vgg"] for r in rows]
    assert fd[0] < fd[1] < fd[2]  # the blurrier, the farther from the held-out images
    assert rows[0]["nn1_accuracy_vgg"] < rows[2]["nn1_accuracy_vgg"]
    assert (tmp_path / "cal.md").read_text().count("| faces@32 |") == 3
    with pytest.raises(SystemExit):
        main(["--sets", "faces@33", "--out", str(tmp_path / "bad")])


def test_sampling_frontier_table_marks_the_factor_the_copy_guard_chose(tmp_path):
    from benchmarks.sampling_frontier import write_table

    rows = [{"factor": f, "gap_nn1_vgg": 0.6, "sharpness_ratio": 0.7, "memorisation_ratio": 0.9, "copy_fraction": 0.1}
            for f in (0.5, 1.0, None)]
    rows[-1] = {**rows[-1], "memorisation_ratio_2nn": 0.97}  # the others from before the 2-NN form
    results = {"a": {"set": "faces@32", "params": {}, "seed": 0, "fit_ssim": 0.99, "guard_factor": None, "rows": rows},
               "b": {"set": "faces@32", "params": {"latent_dim": 8}, "seed": 0, "fit_ssim": 0.9, "guard_factor": 1.0,
                     "rows": rows}}
    write_table(results, tmp_path / "t.md")
    text = (tmp_path / "t.md").read_text()
    assert "| faces@32 | defaults | 0 | 0.99 | prior ← | 0.60 | 0.70 | 0.90 / 0.97 | 0.10 |" in text
    assert "| kernel 0.50 h | 0.60 | 0.70 | 0.90 / — | 0.10 |" in text
    assert '| faces@32 | {"latent_dim": 8} | 0 | 0.90 | kernel 1.00 h ← |' in text
    assert text.count(" ← |") == 2


def test_memorisation_blur_scores_held_out_and_copies_at_each_blur(tmp_path, capsys):
    import json

    from benchmarks.memorisation_blur import SIGMAS, main

    main(["--sets", "faces@32", "--out", str(tmp_path / "blur")])
    rows = json.loads((tmp_path / "blur.json").read_text())
    assert [(r["sigma"], r["images"]) for r in rows] == [(s, k) for s in SIGMAS for k in ("held-out", "training copies")]
    plain = {(r["sigma"], r["images"]): (r["memorisation_ratio"], r["memorisation_ratio_2nn"]) for r in rows}
    assert plain[0.0, "held-out"] == (1.0, 1.0) and plain[0.0, "training copies"] == (0.0, 0.0)
    assert all(two > 0.9 for (_, kind), (_, two) in plain.items() if kind == "held-out")
    assert (tmp_path / "blur.md").read_text().count("\n") == 2 + len(rows) and "2-NN" in capsys.readouterr().out
