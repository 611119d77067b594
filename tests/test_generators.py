"""Generator backbones: shapes, range, gradients, rebuild, z-dependence, fitting, errors."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neurosql.errors import NeuroSQLError
from neurosql.core.generators import GENERATORS, build_generator, count_parameters, supported_resolutions

TINY = 8  # the narrowest width: keeps every test fast
# every backbone, plus the resnet's second width schedule (at a width where it differs from halving)
# (the transformer at width 16: at 8, two dimensions per attention head learn too slowly for 30 steps)
VARIANTS = [(name, {"width": 16} if name == "transformer" else {}) for name in GENERATORS] + [
    ("resnet", {"width": 16, "width_schedule": "constant"})]
VARIANT_IDS = [*GENERATORS, "resnet-constant"]


def tiny(name, latent_dim=4, resolution=28, channels=1, width=TINY, **options):
    torch.manual_seed(0)
    return build_generator(name, latent_dim, resolution, channels, width=width, **options)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("resolution", [28, 32, 64, 128])
@pytest.mark.parametrize("name", GENERATORS)
def test_shape_and_range(name, resolution, channels):
    g = tiny(name, resolution=resolution, channels=channels)
    assert (g.latent_dim, g.resolution, g.channels) == (4, resolution, channels)
    x = g(torch.randn(2, 4))
    assert x.shape == (2, channels, resolution, resolution)
    assert torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1


def _expected_resolutions(name):
    # the rules as stated in the docstrings, enumerated independently of the code
    sides = range(1, 513)
    if name == "convnet":
        return {s0 * 2**k for s0 in (4, 7) for k in range(1, 10) if s0 * 2**k <= 512}
    if name == "resnet":
        return {r for r in sides if r % 2 == 0 and r >= 18}
    if name == "transformer":
        return {r for r in sides if r % 4 == 0 and 16 <= r <= 128}
    return {r for r in sides if r % 4 == 0 and r >= 16}


@pytest.mark.parametrize("name", GENERATORS)
def test_supported_resolutions_match_rule_and_build(name):
    supported = supported_resolutions(name)
    assert set(supported) == _expected_resolutions(name)
    assert {28, 32, 64, 128} <= set(supported)
    for r in (r for r in supported if r <= 48):
        assert tiny(name, latent_dim=2, resolution=r)(torch.randn(2, 2)).shape == (2, 1, r, r)


@pytest.mark.parametrize("name, options", VARIANTS, ids=VARIANT_IDS)
def test_gradients_reach_every_parameter(name, options):
    g = tiny(name, **options)
    target = torch.rand(3, 1, 28, 28)
    F.mse_loss(g(torch.randn(3, 4)), target).backward()
    for pname, p in g.named_parameters():
        assert p.grad is not None, f"{pname} is unused"
        # a bias in front of a BatchNorm gets ~1e-9 (rounding); every useful parameter gets >= 1e-4 here
        assert p.grad.abs().max() > 1e-6, f"{pname} gets no gradient"


@pytest.mark.parametrize("name, options", VARIANTS, ids=VARIANT_IDS)
def test_rebuild_from_config(name, options):
    g = tiny(name, latent_dim=5, resolution=32, channels=3, **options)
    g(torch.randn(4, 5))  # one train-mode pass moves the BatchNorm running statistics off their defaults
    config = json.loads(json.dumps(g.config))  # checkpoints store it as JSON
    torch.manual_seed(1)  # a different initialisation, overwritten by the state dict
    h = build_generator(**config)
    assert type(h) is type(g) and count_parameters(h) == count_parameters(g)
    h.load_state_dict(g.state_dict())
    g.eval(), h.eval()
    z = torch.randn(3, 5)
    with torch.no_grad():
        assert torch.allclose(g(z), h(z), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", GENERATORS)
def test_config_records_the_default_width_as_plain_ints(name):
    g = build_generator(name, np.int64(3), resolution=np.int64(32))  # numpy integers, as from a sweep
    assert {k: g.config[k] for k in ("name", "latent_dim", "resolution", "channels")} == dict(
        name=name, latent_dim=3, resolution=32, channels=1
    )
    assert g.width > 0 and all(type(g.config[k]) is int for k in ("latent_dim", "resolution", "width"))
    assert g.config == build_generator(**g.config).config


@pytest.mark.parametrize("name", GENERATORS)
def test_codes_matter_and_samples_are_independent_in_eval(name):
    g = tiny(name)
    z = torch.randn(4, 4)
    for _ in range(3):
        g(torch.randn(16, 4))  # realistic running statistics for eval mode
    g.eval()
    with torch.no_grad():
        x = g(z)
        assert (x[0] - x[1]).abs().max() > 1e-3  # different codes, different images
        assert torch.allclose(g(z[2:3]), x[2:3], atol=1e-6)  # in eval mode a sample ignores its batch


def test_unet_codes_enter_only_through_film():
    g = tiny("unet")
    z = torch.randn(3, 4)
    g.eval()
    with torch.no_grad():
        assert (g(z)[0] - g(z)[1]).abs().max() > 1e-3
        for m in g.modules():
            if hasattr(m, "film"):
                m.film.weight.zero_()  # FiLM now ignores z
        x = g(z)
    assert torch.allclose(x, x[:1].expand_as(x), atol=1e-6)


@pytest.mark.parametrize("name, options", VARIANTS, ids=VARIANT_IDS)
def test_fresh_generator_is_not_saturated(name, options):
    options = {k: v for k, v in options.items() if k != "width"}
    g = build_generator(name, 16, **options)  # the default width
    z = torch.randn(8, 16)
    for train in (True, False):
        g.train(train)
        with torch.no_grad():
            x = g(z)
        assert ((x > 0.05) & (x < 0.95)).float().mean() > 0.99


@pytest.mark.parametrize("name, options", VARIANTS, ids=VARIANT_IDS)
def test_fits_eight_fixed_targets(name, options):
    g = tiny(name, **options)
    torch.manual_seed(2)
    z = torch.randn(8, 4)
    targets = F.interpolate(torch.rand(8, 1, 4, 4), size=28, mode="bilinear")  # smooth images (8, 1, 28, 28)
    # a generator that ignored z could at best output the mean target
    constant_floor = F.mse_loss(targets.mean(0, keepdim=True).expand_as(targets), targets).item()
    opt = torch.optim.Adam(g.parameters(), lr=5e-3)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = F.mse_loss(g(z), targets)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # worst of seeds 0-9: 0.31 and 0.48; the margins absorb the seed, not a failure to learn
    assert losses[-1] < 0.5 * losses[0]
    assert losses[-1] < 0.7 * constant_floor


def test_count_parameters_matches_hand_count():
    g = build_generator("convnet", 2, resolution=28, channels=1, width=16)
    # Linear 2→16·7·7 (no bias), BN(16), ConvT 16→8 (4x4), BN(8), ConvT 8→8 (floored at MIN_WIDTH), BN(8),
    # Conv3x3 8→1 with bias
    expected = 2 * 16 * 49 + 2 * 16 + 16 * 8 * 16 + 2 * 8 + 8 * 8 * 16 + 2 * 8 + 8 * 9 + 1
    assert count_parameters(g) == expected
    g.head.requires_grad_(False)
    assert count_parameters(g) == expected - (8 * 9 + 1)


def test_resnet_28_is_the_centre_of_32():
    # both start from 2x2, so they share every parameter shape
    g28, g32 = tiny("resnet", resolution=28), tiny("resnet", resolution=32)
    g32.load_state_dict(g28.state_dict())
    g28.eval(), g32.eval()
    z = torch.randn(2, 4)
    with torch.no_grad():
        assert torch.allclose(g28(z), g32(z)[..., 2:30, 2:30], rtol=0, atol=1e-6)


def test_resnet_paper_widths():
    def block_widths(schedule):
        g = build_generator("resnet", 8, resolution=32, width=512, width_schedule=schedule)
        return [block.skip[0].out_channels for block in g.blocks]

    assert block_widths("halving") == [512, 256, 128, 64]  # paper App. L
    assert block_widths("constant") == [512] * 4  # paper §3


@pytest.mark.parametrize("name", GENERATORS)
def test_forward_follows_the_device_of_the_parameters(name):
    # the meta device stands in for CUDA: any tensor made on the CPU inside forward would clash
    g = tiny(name).to("meta")
    x = g(torch.randn(2, 4, device="meta"))
    assert x.device.type == "meta" and x.shape == (2, 1, 28, 28)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(name="vae", latent_dim=4), "convnet, resnet, unet"),
        (dict(name="convnet", latent_dim=0), "latent_dim"),
        (dict(name="convnet", latent_dim=2.5), "latent_dim"),
        (dict(name="convnet", latent_dim=True), "latent_dim"),
        (dict(name="resnet", latent_dim=4, channels=2), "channels"),
        (dict(name="convnet", latent_dim=4, resolution=30), "convnet cannot produce 30x30"),
        (dict(name="resnet", latent_dim=4, resolution=27), "even size"),
        (dict(name="unet", latent_dim=4, resolution=30), "multiple of 4"),
        (dict(name="unet", latent_dim=4, resolution=1024), "1024"),
        (dict(name="unet", latent_dim=4, width=4), "width"),
        (dict(name="convnet", latent_dim=4, width_schedule="halving"), "valid options: none"),
        (dict(name="resnet", latent_dim=4, depth=3), "width_schedule"),
        (dict(name="resnet", latent_dim=4, width_schedule="doubling"), "halving"),
    ],
)
def test_bad_arguments_raise(kwargs, fragment):
    with pytest.raises(NeuroSQLError, match=fragment):
        build_generator(**kwargs)


@pytest.mark.parametrize("name", GENERATORS)
def test_wrong_code_shape_raises(name):
    g = tiny(name)
    with pytest.raises(NeuroSQLError, match=r"\(B, 4\)"):
        g(torch.randn(2, 5))
    with pytest.raises(NeuroSQLError, match=r"\(B, 4\)"):
        g(torch.randn(4))


def test_resnet_constant_width_is_reachable_from_the_config(digits):
    """App. D's ResNet at one width throughout: --generator resnet --width-schedule constant."""
    from neurosql import NeuroSQL, NeuroSQLError

    model = NeuroSQL(generator="resnet", width=16, width_schedule="constant", latent_dim=2, epochs=1,
                     progress=False).fit(digits[:16])
    convs = [m for m in model.generator_.modules() if isinstance(m, torch.nn.Conv2d)]
    assert {m.out_channels for m in convs[:-1]} == {16} and model.generator_.config["width_schedule"] == "constant"
    halving = NeuroSQL(generator="resnet", width=16, latent_dim=2, epochs=1, progress=False).fit(digits[:16])
    assert len({m.out_channels for m in halving.generator_.modules() if isinstance(m, torch.nn.Conv2d)}) > 2
    with pytest.raises(NeuroSQLError, match="resnet only"):
        NeuroSQL(generator="convnet", width_schedule="constant").fit(digits[:16])


def test_transformer_folds_each_token_into_its_own_patch():
    from neurosql.core.generators import Transformer

    B, side, p, C = 2, 3, 4, 3
    h = torch.randn(B, side * side, p * p * C)
    image = Transformer.unpatchify(h, C, p)
    assert image.shape == (B, C, side * p, side * p)
    for b in range(B):
        for i in range(side):
            for j in range(side):
                patch = h[b, i * side + j].view(C, p, p)
                assert torch.equal(image[b, :, i * p:(i + 1) * p, j * p:(j + 1) * p], patch)


def test_transformer_decoder_shapes_rebuild_and_refusals():
    g = build_generator("transformer", 8, resolution=32, channels=3, width=16)
    out = g(torch.randn(5, 8)).detach()
    assert out.shape == (5, 3, 32, 32) and 0 <= float(out.min()) and float(out.max()) <= 1
    assert build_generator(**g.config).config == g.config
    with pytest.raises(NeuroSQLError, match="cannot produce 30x30"):
        build_generator("transformer", 8, resolution=30)
    with pytest.raises(NeuroSQLError, match="multiple of 4"):
        build_generator("transformer", 8, resolution=28, width=10)
