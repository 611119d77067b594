"""The 1-nearest-neighbour two-sample test: can generated features be told from real ones?

k-NN precision needs many real images: with a few dozen held-out images in a
wide feature space every k-NN ball is about as wide as the set, and colour
clouds score precision 1.00. The leave-one-out 1-NN classifier does not build
balls; each image only asks whether its nearest other image is real or
generated. Its accuracy is 0.5 when the two sets are indistinguishable and 1.0
when they are always told apart, and it stays informative at tens of images
(Lopez-Paz & Oquab, 2017; Xu et al., 2018, who found it the most discriminative
of the usual GAN metrics).
"""
import torch

from neurosql.errors import NeuroSQLError
from neurosql.metrics._validate import check_features
from neurosql.metrics.prdc import feature_distances


def nn1_test(f_real, f_fake) -> dict:
    """Leave-one-out 1-NN classification of the union of ``f_real`` (N, d) and ``f_fake`` (M, d).

    Each point is labelled by its nearest *other* point (Euclidean).
    ``nn1_accuracy`` is the mean of the share of real points labelled real and
    the share of generated points labelled generated, so chance is 0.5
    whatever N and M: near 0.5 the sets are indistinguishable, near 1 they are
    told apart, well below 0.5 generated points are near-copies of real ones.
    ``nn1_fake`` is the generated side alone, the fidelity half: the share of
    samples whose nearest neighbour is another sample (about (M-1)/(N+M-1)
    for equal laws, 0.5 for N = M). It catches samples huddled near the mean
    of the data (blur, mush), which are every real point's neighbour and so
    bring the real side, and with it the balanced accuracy, down to chance.
    Cost O((N + M)^2 d) time and O((N + M)^2) memory.
    """
    f_real, f_fake = check_features(f_real, "f_real"), check_features(f_fake, "f_fake")
    if f_real.shape[1] != f_fake.shape[1]:
        raise NeuroSQLError(f"feature sets differ in width: {f_real.shape[1]} vs {f_fake.shape[1]}")
    points = torch.cat([torch.from_numpy(f_real), torch.from_numpy(f_fake)])  # (N + M, d)
    d = feature_distances(points, points)
    d.fill_diagonal_(float("inf"))  # leave one out: a point is never its own neighbour
    is_fake = torch.arange(len(points)) >= f_real.shape[0]
    right = is_fake[d.argmin(dim=1)] == is_fake
    real_side, fake_side = right[~is_fake].double().mean().item(), right[is_fake].double().mean().item()
    return {"nn1_accuracy": 0.5 * (real_side + fake_side), "nn1_fake": fake_side}
