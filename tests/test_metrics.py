"""Tests for neurosql.metrics: each metric against a brute-force or library reference."""
import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from neurosql.errors import NeuroSQLError
from neurosql.metrics import (
    METRIC_DEFINITIONS, DomainFeatureNet, ProxyFeatureNet, domain_feature_net, downstream_score,
    evaluate_classifier, evaluate_images, extract_features, fid_from_features, frechet_distance, kid,
    knn_label, load_lpips, lpips_available, lpips_distance, macro_precision_recall, mmd2_unbiased,
    nearest_real_ssim, paired_lpips, prdc, proxy_fid, random_pairs, reconstruction_ssim,
    sampled_pairs_ssim, train_classifier,
)
from neurosql.metrics.lpips import LPIPS_CHANNELS, LPIPS_SCALE, LPIPS_SHIFT, VGG16_CONFIG


def _ref_ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """scikit-image SSIM with the Wang et al. settings, one (C, H, W) pair."""
    return structural_similarity(
        a.double().numpy(), b.double().numpy(), channel_axis=0, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=1.0,
    )


# ---------------------------------------------------------------- features and FID

def test_proxy_net_is_fixed_and_leaves_global_rng_alone(mnist):
    X = mnist[0][:40]
    state = torch.random.get_rng_state()
    a, b = ProxyFeatureNet(), ProxyFeatureNet()
    assert torch.equal(state, torch.random.get_rng_state())
    fa, fb = extract_features(a, X, batch_size=16), extract_features(b, X)
    assert fa.shape == (40, 128) and fa.dtype == np.float64
    assert np.array_equal(fa, fb)
    assert not np.allclose(fa, extract_features(ProxyFeatureNet(seed=1), X))
    # grayscale is replicated, so an explicit 3-channel copy gives the same features
    assert np.allclose(fa, extract_features(a, X.expand(-1, 3, -1, -1)))


def test_pfid_of_a_set_against_itself_is_zero(mnist):
    X = mnist[0][:200]
    out = proxy_fid(X, X.clone(), n=2048, seed=3)
    assert abs(out["pfid"]) < 1e-6
    assert out["n_real"] == out["n_fake"] == 200
    assert proxy_fid(X, X, n=50)["n_real"] == 50


def test_pfid_grows_with_corruption_strength(mnist):
    real = mnist[0][:150].double()
    net = ProxyFeatureNet()
    f_real = extract_features(net, real)
    g = torch.Generator().manual_seed(0)
    noisy = [(real + s * torch.randn(real.shape, generator=g, dtype=real.dtype)).clamp(0, 1) for s in (0.1, 0.2, 0.4)]
    blurred = [torch.from_numpy(gaussian_filter(real.numpy(), sigma=(0, 0, s, s))) for s in (0.7, 1.2, 2.0)]
    for series in (noisy, blurred):
        # level 0 is the clean set itself (pFID 0); each stronger corruption must score worse
        scores = [0.0] + [fid_from_features(f_real, extract_features(net, x)) for x in series]
        assert all(lo + 0.05 < hi for lo, hi in zip(scores, scores[1:])), scores


def _random_spd(rng, d, rank=None):
    a = rng.normal(size=(d, rank or d))
    return a @ a.T + (0 if rank else 0.1 * np.eye(d))


def test_frechet_distance_matches_symmetric_formula_and_diagonal_closed_form():
    rng = np.random.default_rng(0)
    d = 6
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
    # tr (s1 s2)^{1/2} = tr (s1^{1/2} s2 s1^{1/2})^{1/2}, a symmetric PSD root with real eigenvalues
    r1 = scipy.linalg.sqrtm(s1).real
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(r1 @ s2 @ r1), 0, None)).sum()
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * cross
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)

    a, b = rng.uniform(0.1, 2, size=d), rng.uniform(0.1, 2, size=d)
    closed = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(closed, rel=1e-9)


def test_frechet_distance_handles_singular_covariances_and_feature_input():
    rng = np.random.default_rng(1)
    s1, s2 = _random_spd(rng, 8, rank=3), _random_spd(rng, 8, rank=2)
    value = frechet_distance(np.zeros(8), s1, np.ones(8), s2)
    assert np.isfinite(value) and value > 0
    x, y = rng.normal(size=(50, 4)), rng.normal(1, 2, size=(60, 4))
    direct = frechet_distance(x.mean(0), np.cov(x.T), y.mean(0), np.cov(y.T))
    assert fid_from_features(x, y) == pytest.approx(direct)
    with pytest.raises(NeuroSQLError):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


# ---------------------------------------------------------------- KID

def _mmd2_loops(x, y):
    k = lambda a, b: (a @ b / len(a) + 1) ** 3  # noqa: E731
    n, m = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return kxx + kyy - 2 * kxy


def test_mmd2_unbiased_matches_double_loop():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 4)), rng.normal(0.5, 1.5, size=(5, 4))
    assert mmd2_unbiased(x, y) == pytest.approx(_mmd2_loops(x, y), rel=1e-10)
    # two images per set: every subset is the whole set, so there is no error bar to estimate
    out = kid(x[:2], y[:2], n_subsets=4, subset_size=100)
    assert out["kid"] == pytest.approx(mmd2_unbiased(x[:2], y[:2])) and out["kid_se"] is None
    assert out["kid_subset_size"] == 2
    assert kid(x, y, n_subsets=1)["kid_se"] is None


def test_kid_subsets_hold_at_most_half_the_smaller_set_so_the_error_bar_is_real():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(40, 4)), rng.normal(0.3, 1.0, size=(25, 4))
    out = kid(x, y, n_subsets=30, subset_size=1000)
    assert out["kid_subset_size"] == 12 and out["kid_se"] > 1e-6  # subsets differ from draw to draw
    assert kid(x, y, n_subsets=30, subset_size=5)["kid_subset_size"] == 5
    big = rng.normal(size=(2000, 2))
    assert kid(big, big, n_subsets=2)["kid_subset_size"] == 1000  # the usual 1,000 of >= 2,000


def test_kid_is_zero_in_expectation_for_equal_laws_and_positive_otherwise():
    rng = np.random.default_rng(1)
    same = np.array([mmd2_unbiased(rng.normal(size=(12, 8)), rng.normal(size=(12, 8))) for _ in range(400)])
    assert abs(same.mean()) < 3 * same.std(ddof=1) / np.sqrt(len(same))
    x, y = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    shifted = kid(x, y + 0.5, n_subsets=20, subset_size=100)
    assert shifted["kid"] > 10 * shifted["kid_se"] > 0
    assert kid(x, y + 0.5, n_subsets=20, subset_size=100) == shifted  # seeded


# ---------------------------------------------------------------- precision, recall, density, coverage

def _prdc_loops(r, f, k_pr=3, k_dc=5):
    dist = lambda a, b: float(np.sqrt(((a - b) ** 2).sum()))  # noqa: E731

    def radius(points, i, k):
        return sorted(dist(points[i], points[j]) for j in range(len(points)) if j != i)[k - 1]

    rr3 = [radius(r, i, k_pr) for i in range(len(r))]
    rf3 = [radius(f, j, k_pr) for j in range(len(f))]
    rr5 = [radius(r, i, k_dc) for i in range(len(r))]
    precision = np.mean([any(dist(fj, r[i]) <= rr3[i] for i in range(len(r))) for fj in f])
    recall = np.mean([any(dist(ri, f[j]) <= rf3[j] for j in range(len(f))) for ri in r])
    density = sum(dist(fj, r[i]) <= rr5[i] for fj in f for i in range(len(r))) / (k_dc * len(f))
    coverage = np.mean([any(dist(r[i], fj) <= rr5[i] for fj in f) for i in range(len(r))])
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


def test_prdc_matches_brute_force():
    rng = np.random.default_rng(0)
    r, f = rng.normal(size=(30, 3)), rng.normal(0.4, 1.3, size=(25, 3))
    got, ref = prdc(r, f), _prdc_loops(r, f)
    for key in ref:
        assert got[key] == pytest.approx(ref[key]), key


def test_prdc_identical_and_disjoint_sets():
    r = np.random.default_rng(2).normal(size=(40, 5))
    same = prdc(r, r.copy())
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    far = prdc(r, r + 100.0)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    with pytest.raises(NeuroSQLError):
        prdc(r[:4], r[:4])


# ---------------------------------------------------------------- SSIM statistics

def test_ssim_statistics_match_scikit_image(mnist):
    X = mnist[0]
    real, fake = X[:20], X[20:32]
    assert reconstruction_ssim(real[:5], fake[:5]) == pytest.approx(
        np.mean([_ref_ssim(a, b) for a, b in zip(real[:5], fake[:5])]), abs=1e-5)
    i, j = random_pairs(20, 12, n_pairs=50, seed=4)
    assert len(i) == len(j) == 12 and len(set(i)) == 12 and len(set(j)) == 12
    assert sampled_pairs_ssim(real, fake, n_pairs=50, seed=4) == pytest.approx(
        np.mean([_ref_ssim(real[a], fake[b]) for a, b in zip(i, j)]), abs=1e-5)
    assert sampled_pairs_ssim(real, fake, n_pairs=6, seed=4) == sampled_pairs_ssim(real, fake, n_pairs=6, seed=4)
    with pytest.raises(NeuroSQLError):
        reconstruction_ssim(real, fake)


def test_nearest_real_ssim_is_the_mean_best_match(mnist):
    X = mnist[0]
    real, fake = X[:8], torch.cat([X[8:11], X[2:3]])  # the last generated image copies a real one
    best = [max(_ref_ssim(f, r) for r in real) for f in fake]
    assert best[-1] == pytest.approx(1.0)
    assert nearest_real_ssim(real, fake) == pytest.approx(np.mean(best), abs=1e-4)


# ---------------------------------------------------------------- LPIPS

def _write_random_lpips(tmp_path, seed=0):
    g = torch.Generator().manual_seed(seed)
    vgg, c_in, idx = {}, 3, 0
    for v in VGG16_CONFIG:
        if v == "M":
            idx += 1
            continue
        vgg[f"features.{idx}.weight"] = torch.randn(v, c_in, 3, 3, generator=g) * (2 / (9 * c_in)) ** 0.5
        vgg[f"features.{idx}.bias"] = 0.1 * torch.randn(v, generator=g)
        c_in, idx = v, idx + 2
    vgg["classifier.0.weight"] = torch.randn(10, 7, generator=g)  # torchvision files carry the classifier too
    lin = {f"lin{l}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for l, c in enumerate(LPIPS_CHANNELS)}
    torch.save(vgg, tmp_path / "vgg16.pth")
    torch.save(lin, tmp_path / "vgg.pth")
    return tmp_path / "vgg16.pth", tmp_path / "vgg.pth", vgg, lin


def _unit_taps(vgg, t):
    """The five LPIPS taps of images t (n, 3, H, W), unit-normalised over channels, by functional ops."""
    shift, scale = torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1)
    t, out, idx = (2 * t - 1 - shift) / scale, [], 0
    for v in VGG16_CONFIG:
        if v == "M":
            out.append(t)  # the last ReLU of each block, just before its pool
            t, idx = F.max_pool2d(t, 2), idx + 1
            continue
        t = F.relu(F.conv2d(t, vgg[f"features.{idx}.weight"], vgg[f"features.{idx}.bias"], padding=1))
        idx += 2
    return [u / (u.pow(2).sum(1, keepdim=True).sqrt() + 1e-10) for u in out]


def _lpips_by_hand(vgg, lin, x, y):
    """LPIPS from the definition, with functional ops on the raw state dicts; x, y (n, 3, H, W)."""
    return sum((w * (a - b) ** 2).sum(1).mean((1, 2)) for w, a, b in zip(
        [lin[f"lin{l}.model.1.weight"].view(1, -1, 1, 1) for l in range(5)], _unit_taps(vgg, x), _unit_taps(vgg, y)))


def test_vgg_cosine_fallback_matches_its_definition_and_is_chosen_without_heads(tmp_path):
    """App. E: "LPIPS ... (fallback: cosine similarity on VGG features)"."""
    from neurosql.metrics.lpips import COSINE_VARIANT, load_vgg_cosine

    vgg_path, _, vgg, _ = _write_random_lpips(tmp_path)
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(3, 3, 32, 32, generator=g), torch.rand(3, 3, 32, 32, generator=g)
    by_hand = sum(1 - (a * b).sum(1).mean((1, 2)) for a, b in zip(_unit_taps(vgg, x), _unit_taps(vgg, y))) / 5
    net = load_vgg_cosine(vgg_path)
    assert np.allclose(lpips_distance(net, x, y), by_hand.numpy(), rtol=1e-4)
    assert np.allclose(lpips_distance(net, x, x), 0, atol=1e-6)
    paired = paired_lpips(x, y, vgg_path)  # a VGG16 file and no heads: the fallback, named as such
    assert paired["lpips_variant"] == COSINE_VARIANT and paired["lpips"] == pytest.approx(float(by_hand.mean()), rel=1e-4)
    with pytest.raises(NeuroSQLError, match="VGG16 weights not found"):
        load_vgg_cosine(tmp_path / "missing.pth")


def test_lpips_loads_weight_files_and_matches_definition(tmp_path):
    vgg_path, lin_path, vgg, lin = _write_random_lpips(tmp_path)
    assert lpips_available(vgg_path, lin_path) == (True, "")
    net = load_lpips(vgg_path, lin_path)
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(3, 3, 32, 32, generator=g), torch.rand(3, 3, 32, 32, generator=g)
    assert np.allclose(lpips_distance(net, x, y), _lpips_by_hand(vgg, lin, x, y).numpy(), rtol=1e-4)
    assert np.array_equal(lpips_distance(net, x, x), np.zeros(3))
    assert np.allclose(lpips_distance(net, x, y), lpips_distance(net, y, x))
    assert (lpips_distance(net, x, y) > 0).all()
    gray = x[:, :1]
    assert np.allclose(lpips_distance(net, gray, y[:, :1]),
                       lpips_distance(net, gray.expand(-1, 3, -1, -1), y[:, :1].expand(-1, 3, -1, -1)))
    paired = paired_lpips(x, y, vgg_path, lin_path)
    assert paired["lpips"] == pytest.approx(lpips_distance(net, x, y).mean())
    assert paired["lpips_variant"] == "VGG16 (original LPIPS)"


def test_lpips_unavailable_reports_reason_and_bad_files_raise(tmp_path):
    vgg_path, lin_path, _, _ = _write_random_lpips(tmp_path)
    ok, reason = lpips_available(tmp_path / "missing.pth", lin_path)
    assert not ok and "missing.pth" in reason and "vgg_path" in reason
    ok, reason = lpips_available(vgg_path, tmp_path / "nope.pth")
    assert not ok and "lin_path" in reason
    x = torch.rand(2, 1, 28, 28)
    # files named by the user are not replaced by ST-LPIPS when missing
    assert paired_lpips(x, x, tmp_path / "missing.pth", lin_path) == {
        "lpips": None, "lpips_variant": None, "lpips_reason": lpips_available(tmp_path / "missing.pth", lin_path)[1]}
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    torch.save({"lin0.model.1.weight": torch.zeros(1, 64, 1, 1)}, tmp_path / "heads.pth")
    for vgg, lin in [("bad.pth", lin_path), ("junk.pth", lin_path), (vgg_path, "heads.pth")]:
        with pytest.raises(NeuroSQLError):
            load_lpips(tmp_path / vgg, tmp_path / lin)
    with pytest.raises(NeuroSQLError):
        load_lpips(tmp_path / "missing.pth", lin_path)


# ---------------------------------------------------------------- classifier, downstream, latent labels

def _bars(n, seed):
    """Easy 2-class images (n, 1, 16, 16): a horizontal (0) or vertical (1) bar at a random place, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    x = 0.1 * rng.random((n, 1, 16, 16))
    for i, (c, pos) in enumerate(zip(labels, rng.integers(3, 13, n))):
        if c == 0:
            x[i, 0, pos - 1:pos + 2, 2:14] = 1.0
        else:
            x[i, 0, 2:14, pos - 1:pos + 2] = 1.0
    return torch.from_numpy(x).float(), labels


def test_classifier_learns_easy_task_deterministically():
    x, y = _bars(200, 0)
    x_test, y_test = _bars(100, 1)
    state = torch.random.get_rng_state()
    model = train_classifier(x, y, epochs=6, seed=5)
    assert torch.equal(state, torch.random.get_rng_state())
    again = train_classifier(x, y, epochs=6, seed=5)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    scores = evaluate_classifier(model, x_test, y_test)
    assert scores["accuracy"] > 0.9 and scores["macro_precision"] > 0.9 and scores["macro_recall"] > 0.9
    features = DomainFeatureNet(model)
    assert extract_features(features, x_test).shape == (100, 128)


def _macro_loops(y_true, y_pred):
    classes = sorted(set(y_true) | set(y_pred))
    prec, rec = [], []
    for c in classes:
        tp = sum(t == c and p == c for t, p in zip(y_true, y_pred))
        n_pred, n_true = sum(p == c for p in y_pred), sum(t == c for t in y_true)
        prec.append(tp / n_pred if n_pred else 0.0)
        rec.append(tp / n_true if n_true else 0.0)
    return np.mean(prec), np.mean(rec)


def test_macro_precision_recall_matches_brute_force_and_sklearn():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, 60)
    y_pred = np.where(rng.random(60) < 0.6, y_true, rng.integers(0, 6, 60))  # 4, 5 are never true
    got = macro_precision_recall(y_true, y_pred)
    assert got == pytest.approx(_macro_loops(list(y_true), list(y_pred)))
    metrics = pytest.importorskip("sklearn.metrics")
    assert got[0] == pytest.approx(metrics.precision_score(y_true, y_pred, average="macro", zero_division=0))
    assert got[1] == pytest.approx(metrics.recall_score(y_true, y_pred, average="macro", zero_division=0))


def test_downstream_score_uses_generated_labels():
    x_train, y_train = _bars(200, 2)
    x_test, y_test = _bars(100, 3)
    x_gen = x_train[:150]
    # generated images carry the wrong labels: only the synthetic-trained classifier may suffer
    out = downstream_score(x_gen, 1 - y_train[:150], x_train, y_train, x_test, y_test, epochs=6)
    assert out["downstream_accuracy"] < 0.1 and out["ceiling_accuracy"] > 0.9
    assert (out["n_synthetic"], out["n_real_train"], out["n_test"]) == (150, 200, 100)
    assert set(out) <= set(METRIC_DEFINITIONS)


def _knn_loops(z, codes, labels, k):
    out = []
    for q in z:
        order = np.argsort(np.linalg.norm(codes - q, axis=1), kind="stable")[:k]
        votes = [labels[i] for i in order]
        best = max(votes.count(c) for c in votes)
        out.append(next(c for c in votes if votes.count(c) == best))  # nearest among the tied classes
    return np.array(out)


def test_knn_label_matches_brute_force_and_breaks_ties_by_nearest():
    rng = np.random.default_rng(0)
    codes, z = rng.normal(size=(60, 3)), rng.normal(size=(50, 3))
    labels = rng.choice([3, 7, 9, 11], size=60)
    for k in (1, 4, 5):
        assert np.array_equal(knn_label(z, codes, labels, k=k, chunk_size=16), _knn_loops(z, codes, labels, k))
    # two neighbours of different classes: the nearer one wins
    codes2, labels2 = np.array([[0.0], [1.0], [5.0]]), np.array([2, 1, 1])
    assert knn_label(np.array([[0.4], [0.6]]), codes2, labels2, k=2).tolist() == [2, 1]
    with pytest.raises(NeuroSQLError):
        knn_label(z, codes, labels, k=61)


# ---------------------------------------------------------------- evaluate_images

def test_evaluate_images_reports_every_metric(mnist, tmp_path):
    X, y = mnist
    real, fake = X[:150], X[150:280]
    out = evaluate_images(real, fake, n=100, kid_subsets=5, kid_subset_size=50, n_nearest=6,
                          vgg_path=tmp_path / "absent.pth", vgg_features=False)
    assert set(out) <= set(METRIC_DEFINITIONS)
    assert out["n_real"] == out["n_fake"] == 100 and out["n_pairs"] == 50 and out["n_nearest"] == 6
    assert out["features"] == "proxy" and out["lpips"] is None and "absent.pth" in out["lpips_reason"]
    assert out["ssim"] == pytest.approx(sampled_pairs_ssim(real, fake, 50, 0))
    assert out["pfid"] == pytest.approx(proxy_fid(real, fake, n=100)["pfid"])
    for key in ("kid", "precision", "recall", "density", "coverage", "nearest_real_ssim"):
        assert np.isfinite(out[key]), key

    domain = evaluate_images(real, fake, real_labels=y[:150], features="domain", n=100, kid_subsets=2,
                             kid_subset_size=50, n_nearest=2, vgg_path=tmp_path / "absent.pth", vgg_features=False)
    assert domain["features"] == "domain" and np.isfinite(domain["pfid"])


def test_evaluate_images_rejects_bad_input(mnist):
    X = mnist[0][:20]
    with pytest.raises(NeuroSQLError):
        evaluate_images(X, X[:, :, :20])
    with pytest.raises(NeuroSQLError):
        evaluate_images(X * 255, X)
    with pytest.raises(NeuroSQLError):
        evaluate_images(X, X, features="domain")
    with pytest.raises(NeuroSQLError):
        evaluate_images(X, X, features="inception")
