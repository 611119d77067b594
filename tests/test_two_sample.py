"""The 1-NN two-sample test against a brute-force reference, its invariants, and the case it exists for."""
import numpy as np
import pytest

from neurosql.errors import NeuroSQLError
from neurosql.metrics import nn1_test, prdc


def nn1_accuracy(real, fake):
    return nn1_test(real, fake)["nn1_accuracy"]


def brute_force_nn1(real: np.ndarray, fake: np.ndarray) -> tuple[float, float]:
    points = list(real) + list(fake)
    labels = [0] * len(real) + [1] * len(fake)
    right = {0: [], 1: []}
    for i, p in enumerate(points):
        others = [j for j in range(len(points)) if j != i]
        j = min(others, key=lambda j: float(np.sum((points[j] - p) ** 2)))
        right[labels[i]].append(labels[j] == labels[i])
    return 0.5 * (np.mean(right[0]) + np.mean(right[1])), np.mean(right[1])


@pytest.mark.parametrize("n_real,n_fake,shift", [(7, 7, 0.0), (9, 5, 0.5), (4, 12, 2.0)])
def test_nn1_accuracy_matches_brute_force(n_real, n_fake, shift):
    rng = np.random.default_rng(n_real + n_fake)
    real, fake = rng.normal(size=(n_real, 6)), rng.normal(size=(n_fake, 6)) + shift
    got, (accuracy, fake_side) = nn1_test(real, fake), brute_force_nn1(real, fake)
    assert got["nn1_accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert got["nn1_fake"] == pytest.approx(fake_side, abs=1e-12)


def test_nn1_accuracy_chance_separation_and_copies():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(400, 8))
    same_law = nn1_accuracy(real, rng.normal(size=(400, 8)))
    assert abs(same_law - 0.5) < 0.06  # indistinguishable sets: chance
    assert nn1_accuracy(real, rng.normal(size=(50, 8)) + 20) == 1.0  # disjoint sets: always told apart
    copies = real + 1e-6 * rng.normal(size=real.shape)
    assert nn1_accuracy(real, copies) == 0.0  # every point's neighbour is its copy in the other set


def test_nn1_accuracy_is_balanced_in_the_set_sizes():
    rng = np.random.default_rng(1)
    # Real and fake from one law, 300 against 30: an unbalanced accuracy would sit near 300/330.
    value = nn1_accuracy(rng.normal(size=(300, 4)), rng.normal(size=(30, 4)))
    assert abs(value - 0.5) < 0.15


def test_nn1_sees_mode_averaged_samples_that_precision_calls_perfect():
    """Few real images in a wide space and samples huddled near their mean (what blurry 'clouds' are in
    feature space): k-NN precision is 1 and, since the samples are every real point's nearest neighbour,
    the balanced accuracy sits at chance; its generated side tells every sample apart."""
    rng = np.random.default_rng(2)
    real = rng.normal(size=(30, 64))
    clouds = 0.3 * rng.normal(size=(30, 64))
    assert prdc(real, clouds)["precision"] == 1.0
    assert nn1_test(real, clouds)["nn1_fake"] == 1.0
    assert nn1_test(real, rng.normal(size=(30, 64)))["nn1_fake"] < 0.75  # the same law: near chance


def test_nn1_accuracy_rejects_bad_feature_sets():
    with pytest.raises(NeuroSQLError, match="differ in width"):
        nn1_test(np.zeros((3, 2)), np.zeros((3, 4)))
    with pytest.raises(NeuroSQLError, match="at least 2 rows"):
        nn1_test(np.zeros((1, 2)), np.zeros((3, 2)))
