"""NeuroSQL end to end on tiny real data: Algorithm 1, sampling, encoding, persistence."""

import numpy as np
import pytest
import torch

import neurosql.methods.neurosql as model_module
from neurosql import NeuroSQL, NeuroSQLConfig, NeuroSQLError
from neurosql.core.lattice import make_lattice

TINY = dict(latent_dim=4, width=16, epochs=6, assign_every=2, batch_size=16, lr=1e-2, progress=False, seed=1)


class recorded_assignments:
    """Within the block, every assignment the model solves (π₀ and each round) is kept as (cost, perm)."""

    def __enter__(self):
        self.seen, self.real = [], (model_module.assign, model_module.exact_solution)
        real_assign, real_exact = self.real

        def assign(cost, method="exact", **kw):
            perm = real_assign(cost, method, **kw)
            self.seen.append((torch.as_tensor(cost).clone(), perm.copy()))
            return perm

        def exact_solution(cost, warm_start=None):
            solution = real_exact(cost, warm_start=warm_start)
            self.seen.append((torch.as_tensor(cost).clone(), solution.perm.copy()))
            return solution

        model_module.assign, model_module.exact_solution = assign, exact_solution
        return self.seen

    def __exit__(self, *exc):
        model_module.assign, model_module.exact_solution = self.real


@pytest.fixture(scope="module")
def assignments(digits):
    """Fit once, recording every assignment the model solves."""
    with recorded_assignments() as seen:
        model = NeuroSQL(**TINY, val_fraction=0.0)
        model.fit(digits)
    return model, seen


def test_loss_decreases_and_every_assignment_is_a_permutation(assignments, digits):
    model, seen = assignments
    rows = model.log_.rows
    assert rows[-1]["train_loss"] < 0.8 * rows[0]["train_loss"]
    # π₀ (PCA init) plus one assignment at epochs 2 and 4; the last epoch only validates.
    assert len(seen) == 3
    n = len(digits)
    for cost, perm in seen[1:]:
        assert cost.shape == (n, n)
        assert sorted(perm.tolist()) == list(range(n))
    assert [r["epoch"] for r in rows if "assign_cost" in r] == [2, 4]


def test_assignment_is_optimal_for_its_cost(assignments):
    _, seen = assignments
    cost, perm = seen[-1]
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost.numpy())
    assert cost[torch.arange(len(perm)), torch.as_tensor(perm)].sum() == pytest.approx(
        float(cost.numpy()[rows, cols].sum()), rel=1e-6
    )


def test_codes_follow_the_momentum_update(digits):
    """Ẑ after two rounds = ρ Q[π₂] + (1−ρ)(ρ Q[π₁] + (1−ρ) Q[π₀])."""
    with recorded_assignments() as seen:
        model = NeuroSQL(**{**TINY, "epochs": 5}, val_fraction=0.0, momentum=0.7).fit(digits)
    perms = [perm for _, perm in seen]
    Q = model.lattice_.points
    p0, p1, p2 = (torch.as_tensor(p) for p in perms)
    expected = 0.7 * Q[p2] + 0.3 * (0.7 * Q[p1] + 0.3 * Q[p0])
    assert torch.allclose(model.codes_, expected, atol=1e-6)
    assert np.array_equal(model.perm_, perms[-1])


def test_momentum_one_makes_codes_lattice_points(digits):
    model = NeuroSQL(**{**TINY, "epochs": 3}, val_fraction=0.0, momentum=1.0).fit(digits)
    assert torch.equal(model.codes_, model.lattice_.points[torch.as_tensor(model.perm_)])


def test_greedy_and_random_init_train(digits):
    model = NeuroSQL(**TINY, assignment="greedy", init="random", val_fraction=0.0).fit(digits)
    assert sorted(model.perm_.tolist()) == list(range(len(digits)))


def test_validation_early_stopping_restores_the_best_model(digits):
    from neurosql.engine.training import averaged

    weights = {}  # epoch -> the (averaged) generator weights validation scored

    def keep(model, row):
        with averaged(model.training_.averages):
            weights[row["epoch"]] = {k: v.clone() for k, v in model.networks_["generator"].state_dict().items()}

    model = NeuroSQL(**{**TINY, "epochs": 12, "assign_every": 1, "patience": 2, "lr": 0.05}, val_fraction=0.25)
    model.fit(digits, callback=keep)
    val = {r["epoch"]: r["val_loss"] for r in model.log_.rows if "val_loss" in r}
    assert len(model.train_index_) == 36 and len(val) == model.epochs_run_
    best_epoch = min(val, key=val.get)
    # it stops at the first epoch past half the budget (6) that is 2 epochs after the best
    assert model.epochs_run_ == 12 or model.epochs_run_ == max(6, best_epoch + 2)
    # The returned generator is the best one: the weights scored at the minimum logged loss.
    restored = model.networks_["generator"].state_dict()
    assert all(torch.equal(restored[k], v) for k, v in weights[best_epoch].items())
    assert any(not torch.equal(restored[k], v) for k, v in weights[model.epochs_run_].items())


def test_without_patience_the_whole_budget_runs_and_the_final_model_is_kept(digits):
    model = NeuroSQL(**{**TINY, "epochs": 12, "assign_every": 1, "lr": 0.05}, val_fraction=0.25).fit(digits)
    val = {r["epoch"]: r["val_loss"] for r in model.log_.rows if "val_loss" in r}
    assert model.epochs_run_ == 12 and len(val) == 12
    held_out = np.setdiff1d(np.arange(len(digits)), model.train_index_)
    from neurosql.core.losses import pairwise_cost

    G_Q = model.decode(model.lattice_.points)
    assert float(pairwise_cost(digits[held_out], G_Q).min(dim=1).values.mean()) == pytest.approx(val[12], rel=1e-5)
    assert min(val.values()) < val[12]  # else the test could not tell the final model from the best one


def test_validation_without_weight_average_reuses_the_rounds_images_exactly(digits):
    """With ema = 0 validation takes G(Q) from the epoch's round: each logged loss equals one
    computed afresh, also on the last epoch (5), which has no round to take it from."""
    from neurosql.core.losses import pairwise_cost

    fresh = {}

    def recompute(model, row):  # the callback sees the weights validation saw
        if "val_loss" not in row:
            return
        held_out = np.setdiff1d(np.arange(len(digits)), model.train_index_)
        G_Q = model.decode(model.lattice_.points)
        fresh[row["epoch"]] = float(pairwise_cost(digits[held_out], G_Q).min(dim=1).values.mean())

    model = NeuroSQL(**{**TINY, "epochs": 5, "ema": 0.0}, val_fraction=0.25).fit(digits, callback=recompute)
    val = {r["epoch"]: r["val_loss"] for r in model.log_.rows if "val_loss" in r}
    assert sorted(val) == [2, 4, 5] and [r["epoch"] for r in model.log_.rows if "time_cost" in r] == [2, 4]
    assert val == pytest.approx(fresh, rel=1e-6)
    assert len(set(val.values())) == 3  # the generator changed between validations


def test_validation_under_a_weight_average_decodes_each_images_nearest_point(digits):
    """With a weight average, a round's validation loss is each held-out image against the averaged
    G at its nearest lattice point under the round's G (the callback sees those weights), within
    0.1 % above the minimum over all of G_avg(Q); the last epoch, with no round, is that minimum."""
    from neurosql.core.losses import loss_per_sample, pairwise_cost
    from neurosql.engine.training import averaged

    expected, exact = {}, {}

    def recompute(model, row):
        if "val_loss" not in row:
            return
        x = digits[np.setdiff1d(np.arange(len(digits)), model.train_index_)]
        Q = model.lattice_.points
        nearest = pairwise_cost(x, model.decode(Q)).argmin(dim=1)
        with averaged(model.training_.averages):
            exact[row["epoch"]] = float(pairwise_cost(x, model.decode(Q)).min(dim=1).values.mean())
            pairs = float(loss_per_sample(x, model.decode(Q[nearest])).mean())
        expected[row["epoch"]] = pairs if "time_cost" in row else exact[row["epoch"]]

    model = NeuroSQL(**{**TINY, "epochs": 6, "ema": 0.9}, val_fraction=0.25).fit(digits, callback=recompute)
    val = {r["epoch"]: r["val_loss"] for r in model.log_.rows if "val_loss" in r}
    assert sorted(val) == [2, 4, 6] and val == pytest.approx(expected, rel=1e-6)
    assert all(exact[e] - 1e-6 <= val[e] <= exact[e] * 1.001 for e in val)
    assert val[2] != pytest.approx(exact[2], rel=1e-7)  # the round's nearest point is not always G_avg's


def test_sample_shapes_range_and_seed(assignments):
    model = assignments[0]
    a, b = model.sample(10, seed=5), model.sample(10, seed=5)
    assert a.shape == (10, 1, 28, 28) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, model.sample(10, seed=6))


def test_encode_returns_nearest_lattice_point_and_refinement_helps(assignments, digits):
    model = assignments[0]
    from neurosql.core.losses import loss_per_sample, pairwise_cost

    x = digits[:6]
    z = model.encode(x)
    Q = model.lattice_.points
    C = pairwise_cost(x, model.decode(Q))
    assert torch.equal(z, Q[C.argmin(dim=1)])
    z_refined = model.encode(x, refine_steps=20)
    before = loss_per_sample(model.decode(z), x).mean()
    after = loss_per_sample(model.decode(z_refined), x).mean()
    assert after < before


def test_reconstruct_training_images_uses_their_codes(assignments):
    model = assignments[0]
    assert torch.equal(model.reconstruct(), model.decode(model.codes_))


def test_save_load_gives_identical_samples(assignments, tmp_path):
    model = assignments[0]
    path = model.save(tmp_path / "m.pt")
    loaded = NeuroSQL.load(path)
    assert torch.equal(model.sample(8, seed=0), loaded.sample(8, seed=0))
    assert torch.equal(model.codes_, loaded.codes_)
    assert loaded.config == NeuroSQLConfig(**{**model.config.to_dict(), "device": "auto"})


def test_unfitted_model_raises():
    with pytest.raises(NeuroSQLError, match="not fitted"):
        NeuroSQL().sample(3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"latent_dim": 0}, "latent-dim"),
        ({"momentum": 0.0}, "momentum"),
        ({"momentum": 1.5}, "momentum"),
        ({"assign_every": 0}, "assign-every"),
        ({"batch_size": -1}, "batch-size"),
        ({"generator": "vit"}, "unknown generator"),
    ],
)
def test_bad_parameters(kwargs, match, digits):
    with pytest.raises(NeuroSQLError, match=match):
        NeuroSQL(**kwargs).fit(digits)


@pytest.mark.parametrize(
    "data, match",
    [
        (torch.rand(1, 1, 28, 28), "at least 2|fewer than 2"),
        (torch.full((4, 1, 28, 28), float("nan")), "NaN|Inf"),
        (torch.rand(4, 1, 28, 28) * 3, r"\[0, 1\]"),
    ],
)
def test_bad_data(data, match):
    with pytest.raises(NeuroSQLError, match=match):
        NeuroSQL(**TINY).fit(data)


def test_load_missing_or_corrupt_checkpoint(tmp_path):
    with pytest.raises(NeuroSQLError, match="not found"):
        NeuroSQL.load(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(NeuroSQLError, match="corrupt"):
        NeuroSQL.load(bad)


def test_minibatch_assignment_algorithm_2(digits):
    """Alg. 2: only m×m costs, each lattice point offered once per epoch, so π stays a permutation."""
    shapes = []
    real_cost = model_module.pairwise_cost

    def recording_cost(x, y, loss="ssim_l1", chunk_size=None, **options):
        shapes.append((len(x), len(y)))
        return real_cost(x, y, loss, chunk_size, **options)

    model_module.pairwise_cost = recording_cost
    try:
        # sampler="prior": the copy guard's 128 × n costs after training are not Algorithm 2's
        model = NeuroSQL(**{**TINY, "epochs": 5, "assign_every": 1}, val_fraction=0.0, assign_batch=16, momentum=1.0,
                         sampler="prior")
        model.fit(digits)
    finally:
        model_module.pairwise_cost = real_cost
    assert shapes and max(max(s) for s in shapes) <= 16
    assert sorted(model.perm_.tolist()) == list(range(len(digits)))
    assert torch.equal(model.codes_, model.lattice_.points[torch.as_tensor(model.perm_)])
    rows = model.log_.rows
    assert all("assign_cost" in r for r in rows[:-1]) and rows[-1]["train_loss"] < rows[0]["train_loss"]


@pytest.mark.parametrize("every_batch, assigned_epochs", [(True, [1, 2, 3, 4]), (False, [3])])
def test_algorithm_2_assigns_in_every_batch(digits, every_batch, assigned_epochs):
    """Alg. 2 solves one m×m assignment per batch in every epoch; --no-assign-every-batch keeps every K-th epoch."""
    config = {**TINY, "epochs": 4, "assign_every": 3}
    with recorded_assignments() as seen:
        model = NeuroSQL(**config, val_fraction=0.0, assign_batch=16, init="random", assign_every_batch=every_batch)
        model.fit(digits)
    batches_per_epoch = len(digits) // 16
    assert len(seen) == batches_per_epoch * len(assigned_epochs)
    assert all(cost.shape == (16, 16) for cost, _ in seen)
    assert [r["epoch"] for r in model.log_.rows if "assign_cost" in r] == assigned_epochs


@pytest.mark.parametrize("subset", ["held", "random"])
def test_algorithm_2_codes_keep_the_spread_of_the_lattice(digits, subset):
    """Offering each batch the points its images hold lets codes settle on lattice points;
    fresh random subsets move most codes every batch and the averages shrink towards 0."""
    model = NeuroSQL(**TINY, val_fraction=0.0, assign_batch=16, init="random", lattice_subset=subset).fit(digits)
    spread = float(model.codes_.std(dim=0).mean() / model.lattice_.points.std(dim=0).mean())
    assert (spread > 0.93) if subset == "held" else (spread < 0.93), spread
    assert sorted(model.perm_.tolist()) == list(range(len(digits)))
    moved = [r["changed"] for r in model.log_.rows]
    assert (moved[-1] < 0.5 * moved[0]) if subset == "held" else (min(moved) > 0.5), moved


def test_algorithm_2_reads_a_memory_map_lazily(digits, tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, (digits.numpy() * 255).round().astype(np.uint8))
    data = np.load(path, mmap_mode="r")
    model = NeuroSQL(**{**TINY, "epochs": 3, "assign_every": 1}, val_fraction=0.0, assign_batch=16, init="random")
    model.fit(data)
    assert sorted(model.perm_.tolist()) == list(range(len(digits)))
    in_memory = NeuroSQL(**{**TINY, "epochs": 3, "assign_every": 1}, val_fraction=0.0, assign_batch=16, init="random")
    in_memory.fit(torch.from_numpy(np.array(data)))
    assert torch.equal(model.codes_, in_memory.codes_)  # same training, data read batch by batch


def test_lazy_images_reject_bad_values(tmp_path):
    from neurosql.data import check_lazy_images

    bad = np.full((4, 1, 12, 12), 2.0, dtype=np.float32)
    with pytest.raises(NeuroSQLError, match=r"\[0, 1\]"):
        check_lazy_images(bad)


def noise_in_generator_steps(monkeypatch, X, **params) -> tuple[torch.Tensor, torch.Tensor]:
    """z − Ẑ_idx of every generator step of a fit, and the noise scale f·h/√d each step should have, h the
    median distance from a code to its nearest other code, by brute force on the codes at that step."""
    noise, scales, inside, f = [], [], [], params.pop("f", 0.25)
    real_step = NeuroSQL._generator_step

    def step(self, x, idx):
        codes = self.codes_.detach().clone()
        distances = torch.cdist(codes, codes).fill_diagonal_(float("inf")).min(dim=1).values
        scales.append(f * distances.median() / codes.shape[1] ** 0.5)
        inside.append(codes[idx])
        hook = self.networks_["generator"].register_forward_pre_hook(
            lambda module, args: noise.append(args[0].detach() - inside[-1]))
        try:
            return real_step(self, x, idx)
        finally:
            hook.remove()

    monkeypatch.setattr(NeuroSQL, "_generator_step", step)
    NeuroSQL(**dict(TINY, latent_dim=3, width=8, epochs=None, steps=12, batch_size=8, val_fraction=0), **params).fit(X)
    return torch.stack(noise), torch.stack(scales)


def test_code_noise_is_gaussian_at_f_h_over_root_d_auto_on_volumes_only(monkeypatch):
    """Generator steps decode Ẑ_idx + f·h/√d·ε with --code-noise f, for volumes and images; by default
    (auto) volumes get f = 0.25 and images none, as in the paper."""
    g = torch.Generator().manual_seed(0)
    volumes, images = torch.rand(16, 1, 16, 16, 16, generator=g), torch.rand(16, 1, 16, 16, generator=g)
    noise, scales = noise_in_generator_steps(monkeypatch, volumes, code_noise=0.25)
    standard = noise / scales.view(-1, 1, 1)  # (steps, batch, d): ε, one N(0, 1) draw per entry
    assert abs(float(standard.std()) - 1) < 0.2 and abs(float(standard.mean())) < 0.2
    assert float(noise.abs().min()) > 0
    noise, scales = noise_in_generator_steps(monkeypatch, images, f=0.5, code_noise=0.5)
    assert abs(float((noise / scales.view(-1, 1, 1)).std()) - 1) < 0.2
    assert float(noise_in_generator_steps(monkeypatch, images)[0].abs().max()) == 0
    assert float(noise_in_generator_steps(monkeypatch, volumes, code_noise=0)[0].abs().max()) == 0
    noise, scales = noise_in_generator_steps(monkeypatch, volumes)  # auto
    assert abs(float((noise / scales.view(-1, 1, 1)).std()) - 1) < 0.2


# two epochs: one assignment round; no held-out split
TWO_EPOCHS = dict(TINY, latent_dim=3, width=8, epochs=2, assign_every=1, batch_size=8, val_fraction=0)


@pytest.mark.parametrize("option, shape, given, recorded", [
    ("code_noise", (16, 1, 16, 16, 16), None, 0.25), ("code_noise", (16, 1, 16, 16), None, 0.0),
    ("code_noise", (16, 1, 16, 16, 16), 0.0, 0.0), ("code_noise", (16, 1, 16, 16), 0.5, 0.5),
    ("colour_warmup", (16, 3, 16, 16), None, 0.25), ("colour_warmup", (16, 1, 16, 16), None, 0.0),
    ("colour_warmup", (16, 1, 16, 16, 16), None, 0.0), ("colour_warmup", (16, 3, 16, 16), 0.0, 0.0),
    ("colour_warmup", (16, 1, 16, 16), 0.5, 0.5)])
def test_fit_resolves_the_automatic_options_and_the_checkpoint_keeps_what_ran(tmp_path, option, shape, given,
                                                                               recorded):
    """Auto (None): code noise 0.25 for volumes, colour warm-up 0.25 for RGB images, else 0; given values stay."""
    X = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    model = NeuroSQL(**TWO_EPOCHS, **{option: given})
    model.fit(X, checkpoint=tmp_path / "model.pt")
    assert getattr(model.config, option) == recorded
    assert getattr(NeuroSQL.load(tmp_path / "model.pt").config, option) == recorded


def test_a_checkpoint_from_before_code_noise_records_it_off(tmp_path):
    """Checkpoints written before the option trained without noise; loading one says so, and its samples
    stay those of the saved model."""
    from neurosql.persistence import load_checkpoint, save_checkpoint

    X = torch.rand(16, 1, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    model = NeuroSQL(**TWO_EPOCHS).fit(X)
    model.save(tmp_path / "new.pt")
    state = load_checkpoint(tmp_path / "new.pt")
    del state["config"]["code_noise"]  # as written before the option existed
    save_checkpoint(state, tmp_path / "old.pt")
    old = NeuroSQL.load(tmp_path / "old.pt")
    assert old.config.code_noise == 0.0
    assert torch.equal(old.sample(4, seed=0), model.sample(4, seed=0))


def redrawn_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


@pytest.mark.parametrize("fraction, redrawn_at", [(0.5, (2,)), (1.0, (2, 4))])
def test_redraw_lattice_moves_the_codes_towards_fresh_lattices(digits, fraction, redrawn_at):
    """--redraw-lattice f: the rounds of the first f of the epochs assign to a fresh lattice of the same
    kind (seeded by the run's seed and the epoch), the later ones keep it; Ẑ follows the momentum update
    on each round's own lattice. Rounds at epochs 2 and 4 of 5."""
    with recorded_assignments() as seen:
        model = NeuroSQL(**{**TINY, "epochs": 5}, val_fraction=0.0, momentum=0.7, redraw_lattice=fraction).fit(digits)
    p0, p1, p2 = (torch.as_tensor(perm) for _, perm in seen)
    n, d, seed = len(digits), TINY["latent_dim"], TINY["seed"]
    lattice = lambda s: make_lattice("sobol_gaussian", n, d, s).points
    Q0, Q1 = lattice(seed), lattice(redrawn_seed(seed, 2))
    Q2 = lattice(redrawn_seed(seed, 4)) if 4 in redrawn_at else Q1
    assert torch.allclose(model.codes_, 0.7 * Q2[p2] + 0.3 * (0.7 * Q1[p1] + 0.3 * Q0[p0]), atol=1e-6)
    assert model.lattice_.seed == redrawn_seed(seed, redrawn_at[-1]) and torch.equal(model.lattice_.points, Q2)
    assert sorted(model.perm_.tolist()) == list(range(n))


def test_redraw_lattice_under_algorithm_2_and_a_reload_samples_alike(digits, tmp_path):
    """Alg. 2 redraws Q as an assigning epoch starts; the checkpoint keeps the last lattice, so a reloaded
    model encodes and samples as the fitted one."""
    cfg = {**TINY, "epochs": 4, "assign_batch": 8, "sampler": "prior"}
    model = NeuroSQL(**cfg, val_fraction=0.0, redraw_lattice=0.5).fit(digits)
    assert model.lattice_.seed == redrawn_seed(TINY["seed"], 2)
    assert sorted(model.perm_.tolist()) == list(range(len(digits)))
    off = NeuroSQL(**cfg, val_fraction=0.0).fit(digits)
    assert off.lattice_.seed == TINY["seed"] and not torch.equal(off.codes_, model.codes_)
    again = NeuroSQL.load(model.save(tmp_path / "m.pt"), device="cpu")
    assert torch.equal(again.sample(4, seed=0), model.sample(4, seed=0))
    assert torch.equal(again.encode(digits[:4]), model.encode(digits[:4]))


def test_the_paper_preset_has_none_of_the_automatic_additions():
    """--preset paper is the paper's method: prior sampling, no code noise and no colour warm-up, whatever
    the data."""
    from neurosql.engine.config import merged_config

    paper = merged_config(NeuroSQLConfig, "neurosql", {}, "paper", {})
    assert (paper.sampler, paper.code_noise, paper.colour_warmup, paper.redraw_lattice) == ("prior", 0.0, 0.0, 0.0)
    assert merged_config(NeuroSQLConfig, "neurosql", {}, "paper", {"code_noise": 0.5}).code_noise == 0.5
    assert merged_config(NeuroSQLConfig, "neurosql", {}, None, {}).code_noise is None  # auto, resolved in fit


def test_code_noise_runs_are_reproducible():
    """The noise comes from the epoch's seeded generator: the same seed gives the same weights."""
    volumes = torch.rand(16, 1, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    small = dict(TINY, latent_dim=3, width=8, epochs=None, steps=8, batch_size=8, val_fraction=0)
    a, b = (NeuroSQL(**small, code_noise=0.25).fit(volumes).generator_.state_dict() for _ in range(2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = NeuroSQL(**small, code_noise=0).fit(volumes).generator_.state_dict()
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_colour_warmup_regresses_rgb_with_l1_first_and_leaves_grey_alone(monkeypatch):
    """RGB: the first quarter of the updates use L1, the rest --loss; grey: --loss throughout, as before issue 21."""
    seen = []
    real = model_module.loss_per_sample
    monkeypatch.setattr(model_module, "loss_per_sample", lambda x, y, loss, *a: seen.append(loss) or real(x, y, loss, *a))
    rgb = torch.rand(32, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    small = dict(TINY, epochs=None, steps=8, batch_size=8, val_fraction=0)
    NeuroSQL(**small).fit(rgb)
    assert seen == ["l1"] * 2 + ["ssim_l1"] * 6
    seen.clear()
    NeuroSQL(**small, colour_warmup=0.5, loss="ssim_l1_yuv").fit(rgb)
    assert seen == ["l1"] * 4 + ["ssim_l1_yuv"] * 4
    seen.clear()
    NeuroSQL(**small).fit(rgb[:, :1])
    assert seen == ["ssim_l1"] * 8
