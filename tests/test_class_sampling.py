"""Class-aware sampling: the kNN vote against brute force, the model API, the CLI."""

import numpy as np
import pytest
import torch

from neurosql import NeuroSQL
from neurosql.methods.code_sampling import sample_class_codes
from neurosql.cli import main
from neurosql.errors import NeuroSQLError


def brute_force_vote(z, codes, labels, k):
    """Majority label of the k nearest codes, ties to the class whose member is nearest (a plain loop)."""
    out = []
    for zj in np.asarray(z, dtype=np.float64):
        order = np.argsort(((np.asarray(codes, dtype=np.float64) - zj) ** 2).sum(1), kind="stable")[:k]
        counts = {}
        for rank, i in enumerate(order):
            counts.setdefault(labels[i], [0, rank])[0] += 1
        out.append(max(counts, key=lambda c: (counts[c][0], -counts[c][1])))
    return np.array(out)


class Recorder:
    """A seeded prior that remembers every draw, so the test can replay the rejection."""

    def __init__(self, d, seed=0):
        self.generator, self.d, self.draws = torch.Generator().manual_seed(seed), d, []

    def __call__(self, count):
        z = torch.randn(count, self.d, generator=self.generator)
        self.draws.append(z)
        return z


@pytest.mark.parametrize("k", [1, 5])
def test_kept_codes_are_the_first_draws_brute_force_votes_for_the_label(k):
    rng = np.random.default_rng(0)
    codes = torch.from_numpy(rng.normal(size=(90, 3))).float()
    labels = np.array(["a", "b", "c"])[(codes[:, 0] > 0.4).numpy() + (codes[:, 1] > 0.8).numpy() * 1]
    draw = Recorder(3)
    z = sample_class_codes(draw, codes, labels, "b", 50, k=k)
    allz = torch.cat(draw.draws)
    votes = brute_force_vote(allz, codes, labels, k)
    assert len(draw.draws) >= 1 and (votes == "b").sum() >= 50
    assert torch.equal(z, allz[votes == "b"][:50])


def test_a_class_the_prior_rarely_reaches_fails_clearly():
    codes = torch.cat([torch.zeros(1, 2) + 6.0, torch.randn(50, 2)])  # one code far out in the tail
    labels = np.array([1] + [0] * 50)
    with pytest.raises(NeuroSQLError, match="were voted label 1 .* rarely generates") as info:
        sample_class_codes(Recorder(2), codes, labels, 1, 10, k=1, max_rounds=3)
    assert "\n" not in str(info.value)


@pytest.fixture(scope="module")
def two_class_model(mnist):
    X, y = mnist
    idx = np.concatenate([np.flatnonzero(y == c)[:30] for c in (0, 1)])
    model = NeuroSQL(latent_dim=2, epochs=3, assign_every=1, width=8, progress=False, seed=0)
    return model.fit(X[idx], labels=np.array(["zero", "one"])[(y[idx] == 1) * 1]), X[idx], y[idx]


def test_labels_follow_the_training_codes_and_the_checkpoint(two_class_model, tmp_path):
    model, _, y = two_class_model
    np.testing.assert_array_equal(model.labels_, np.array(["zero", "one"])[(y[model.train_index_] == 1) * 1])
    assert model.classes_ == ["one", "zero"]
    a = model.sample(6, seed=2, label="one")
    assert a.shape == (6, 1, 28, 28)
    loaded = NeuroSQL.load(model.save(tmp_path / "m.pt"))
    np.testing.assert_array_equal(loaded.labels_, model.labels_)
    assert torch.equal(loaded.sample(6, seed=2, label="one"), a)


def test_label_errors(two_class_model, digits):
    model, X, _ = two_class_model
    with pytest.raises(NeuroSQLError, match="unknown label 'two'; this model knows the labels one, zero"):
        model.sample(3, label="two")
    with pytest.raises(NeuroSQLError, match="labels must have shape \\(60,\\)"):
        NeuroSQL(epochs=1).fit(X, labels=np.zeros(59))
    unlabelled = NeuroSQL(latent_dim=2, epochs=1, width=8, progress=False).fit(digits[:12])
    with pytest.raises(NeuroSQLError, match="trained without labels"):
        unlabelled.sample(3, label=0)


def test_cli_labels_reach_the_run_and_sample(tmp_path, capsys):
    out = tmp_path / "run"
    tiny = ["--epochs", "2", "--assign-every", "1", "--latent-dim", "2", "--width", "8", "--limit", "60",
            "--no-progress", "--no-evaluate"]
    assert main(["train", "--out", str(out), *tiny]) == 0
    assert (out / "samples_by_class.png").is_file()
    assert main(["sample", "--checkpoint", str(out), "-n", "4", "--label", "7", "--out", str(tmp_path / "s.png")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (4, 1, 28, 28)
    capsys.readouterr()
    assert main(["sample", "--checkpoint", str(out), "--label", "cat", "--out", str(tmp_path / "c.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown label 'cat'") and err.count("\n") == 1
    assert not (tmp_path / "c.png").exists()


def test_segment_draws_lie_between_a_class_code_and_one_of_its_nearest_same_class_codes():
    from neurosql.methods.code_sampling import class_segment_draws

    rng = np.random.default_rng(0)
    codes = torch.from_numpy(rng.normal(size=(30, 3))).float()
    labels = np.array(["a", "b", "c"])[rng.integers(0, 3, 30)]
    k = 2
    draw = class_segment_draws(codes, labels, "b", torch.Generator().manual_seed(1), k=k)
    z = draw(200)
    own = codes[torch.as_tensor(labels == "b")].numpy()
    # brute force: every draw is on a segment from some class-b code to one of its k nearest class-b codes
    segments = []
    for i, a in enumerate(own):
        others = [j for j in np.argsort(np.linalg.norm(own - a, axis=1)) if j != i][:k]
        segments += [(a, own[j]) for j in others]
    for point in z.numpy():
        on = [np.linalg.norm(np.cross(point - a, b - a)) < 1e-4 * np.linalg.norm(b - a) + 1e-5
              and -1e-5 <= np.dot(point - a, b - a) <= np.dot(b - a, b - a) + 1e-5 for a, b in segments]
        assert any(on)
    assert torch.equal(z, class_segment_draws(codes, labels, "b", torch.Generator().manual_seed(1), k=k)(200))
    with pytest.raises(NeuroSQLError, match="no training image has label d"):
        class_segment_draws(codes, labels, "d", None)


@pytest.mark.parametrize("block", [1 << 24, 7 * 50, 50])  # one block, blocks of 7 rows, of one row
def test_nearest_distances_in_blocks_equal_a_plain_loop(monkeypatch, block):
    from neurosql.methods import code_sampling as class_sampling

    monkeypatch.setattr(class_sampling, "NN_BLOCK", block)
    codes = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    codes[7] = codes[3]  # a duplicate code: its nearest other code is at distance 0, not itself excluded twice
    expected = [min(float((codes[i] - codes[j]).norm()) for j in range(50) if j != i) for i in range(50)]
    np.testing.assert_allclose(class_sampling.nearest_distances(codes).numpy(), expected, atol=1e-5)
