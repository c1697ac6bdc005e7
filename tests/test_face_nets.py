"""Face networks (latentlab.nets.faces): shapes, channel schedules, conditions, gradients, memory formats."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from latentlab.distributions import DiagonalGaussian
from latentlab.checks import FACE_IMAGE_SIZES
from latentlab.nets.faces import (
    CLASSIFIER_WIDTHS,
    DCGANDecoder,
    DCGANEncoder,
    Discriminator,
    FaceClassifier,
    ResidualBlock,
    ResidualDecoder,
    ResidualEncoder,
    default_channels,
    face_networks,
    num_stages,
)

KINDS = ("residual", "dcgan")
ENCODERS = {"residual": ResidualEncoder, "dcgan": DCGANEncoder}
DECODERS = {"residual": ResidualDecoder, "dcgan": DCGANDecoder}
LATENT = 6


def tiny(image_size: int) -> tuple[int, ...]:
    """Narrow widths (4, 8, 16, ...) with the right number of stages: fast on a CPU."""
    return tuple(4 * 2**i for i in range(num_stages(image_size)))


def images(image_size: int, batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 3, image_size, image_size)


def tiny_nets(image_size: int = 32) -> dict[str, nn.Module]:
    """One of every network at ``image_size`` with narrow widths."""
    ch = tiny(image_size)
    return {
        "residual_encoder": ResidualEncoder(image_size, LATENT, ch),
        "dcgan_encoder": DCGANEncoder(image_size, LATENT, ch),
        "residual_decoder": ResidualDecoder(image_size, LATENT, ch),
        "dcgan_decoder": DCGANDecoder(image_size, LATENT, ch),
        "dcgan_discriminator": Discriminator(image_size, ch, kind="dcgan"),
        "residual_discriminator": Discriminator(image_size, ch, outputs=3, kind="residual"),
        "residual_classifier": FaceClassifier(image_size, 4, ch, kind="residual", dropout=0.2),
        "dcgan_classifier": FaceClassifier(image_size, 4, ch, kind="dcgan"),
    }


def flat(out) -> torch.Tensor:
    """One tensor per output: an encoder's mean and log_var side by side."""
    return torch.cat([out.mean, out.log_var], dim=1) if isinstance(out, DiagonalGaussian) else out


def run(name: str, net: nn.Module, image_size: int, batch: int = 2) -> torch.Tensor:
    """Feed a net its kind of input and return one output tensor."""
    if name.endswith("decoder"):
        return net(torch.randn(batch, LATENT))
    return flat(net(images(image_size, batch)))


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("image_size", FACE_IMAGE_SIZES)
@pytest.mark.parametrize("kind", KINDS)
def test_encoder_and_decoder_shapes(kind, image_size):
    ch = tiny(image_size)
    encoder, decoder = ENCODERS[kind](image_size, LATENT, ch), DECODERS[kind](image_size, LATENT, ch)
    x = images(image_size)
    q = encoder(x)
    assert isinstance(q, DiagonalGaussian)
    assert q.mean.shape == q.log_var.shape == (2, LATENT)
    features = encoder.features(x)
    assert features.shape == (2, encoder.feature_dim) == (2, ch[-1] * 4 * 4)
    assert decoder(q.rsample()).shape == (2, 3, image_size, image_size)


@pytest.mark.parametrize("image_size", FACE_IMAGE_SIZES)
@pytest.mark.parametrize("kind", KINDS)
def test_discriminator_and_classifier_shapes(kind, image_size):
    ch, x = tiny(image_size), images(image_size)
    for outputs in (1, 3):
        disc = Discriminator(image_size, ch, outputs=outputs, kind=kind)
        assert disc(x).shape == (2, outputs)
        assert disc.features(x).shape == (2, disc.feature_dim)
    clf = FaceClassifier(image_size, 5, ch, kind=kind, dropout=0.1)
    assert clf(x).shape == (2, 5)
    assert clf.features(x).shape == (2, clf.feature_dim)


def test_default_residual_nets_at_128_px_follow_introvac():
    """Default 128 px pair (paper scale, latent 256): five pooling stages 32..512 down to 4x4, mirrored back."""
    encoder, decoder = face_networks(128, 256)
    assert encoder.channels == decoder.channels == (32, 64, 128, 256, 512)
    assert sum(isinstance(m, nn.AvgPool2d) for m in encoder.modules()) == 5
    assert sum(isinstance(m, nn.Upsample) for m in decoder.modules()) == 5

    shapes: dict[str, list] = {"encoder": [], "decoder": []}

    def record(where):
        return lambda module, inputs, output: shapes[where].append(tuple(output.shape[1:]))

    for stage in [*encoder.trunk.stages, encoder.trunk.final]:
        stage.register_forward_hook(record("encoder"))
    for stage in [decoder.initial, *decoder.stages]:
        stage.register_forward_hook(record("decoder"))
    encoder.eval(), decoder.eval()
    with torch.no_grad():
        q = encoder(images(128, batch=1))
        x = decoder(q.mean)
    assert shapes["encoder"] == [(32, 64, 64), (64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 4, 4)]
    # the decoder gives every resolution the encoder's width there
    assert shapes["decoder"] == [(512, 4, 4), (256, 8, 8), (128, 16, 16), (64, 32, 32), (32, 64, 64), (32, 128, 128)]
    assert q.mean.shape == q.log_var.shape == (1, 256)
    assert encoder.feature_dim == 512 * 4 * 4
    assert x.shape == (1, 3, 128, 128)


def test_default_channel_schedules_keep_a_512_wide_bottleneck():
    assert [num_stages(s) for s in (32, 64, 128)] == [3, 4, 5]
    assert default_channels(64) == (64, 128, 256, 512)
    assert default_channels(32) == (128, 256, 512)
    # Creswell et al.'s DCGAN nets at 64 px: four stride-2 convolutions 64..512
    encoder = DCGANEncoder(64, 100)
    assert encoder.channels == (64, 128, 256, 512)
    strided = [m for m in encoder.modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)]
    assert [m.out_channels for m in strided] == [64, 128, 256, 512]
    assert FaceClassifier(32, 1).channels == CLASSIFIER_WIDTHS[-3:]


def test_discriminator_first_layer_has_no_batchnorm():
    for kind in KINDS:
        first_stage = Discriminator(32, tiny(32), kind=kind).trunk.stages[0]
        assert not any(isinstance(m, nn.BatchNorm2d) for m in first_stage.modules())
    # the encoder's residual stem keeps its BatchNorm
    assert any(isinstance(m, nn.BatchNorm2d) for m in ResidualEncoder(32, 2, tiny(32)).trunk.stages[0].modules())


def test_outputs_are_raw_not_squashed():
    """Decoders return likelihood parameters: logits/means may leave [0, 1]."""
    decoder = ResidualDecoder(32, LATENT, tiny(32))
    out = decoder(10 * torch.randn(4, LATENT))
    assert out.min() < 0 or out.max() > 1


# ----------------------------------------------------------------------------- conditions


@pytest.mark.parametrize("kind", KINDS)
def test_condition_is_required_refused_and_used(kind):
    ch, x, z = tiny(32), images(32), torch.randn(2, LATENT)
    c0, c1 = torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    encoder = ENCODERS[kind](32, LATENT, ch, condition_dim=2).eval()
    decoder = DECODERS[kind](32, LATENT, ch, condition_dim=2).eval()
    with pytest.raises(ValueError, match="expects a condition of width 2"):
        encoder(x)
    with pytest.raises(ValueError, match="expects a condition of width 2"):
        decoder(z)
    with pytest.raises(ValueError, match="condition"):
        decoder(z, torch.ones(2, 3))
    assert not torch.allclose(encoder(x, c0).mean, encoder(x, c1).mean)
    assert not torch.allclose(decoder(z, c0), decoder(z, c1))
    plain_encoder, plain_decoder = ENCODERS[kind](32, LATENT, ch), DECODERS[kind](32, LATENT, ch)
    with pytest.raises(ValueError, match="condition_dim=0"):
        plain_encoder(x, c0)
    with pytest.raises(ValueError, match="condition_dim=0"):
        plain_decoder(z, c0)


@pytest.mark.parametrize("kind", KINDS)
def test_face_networks_builds_a_matching_pair(kind):
    encoder, decoder = face_networks(32, LATENT, kind=kind, condition_dim=2, channels=tiny(32))
    assert isinstance(encoder, ENCODERS[kind]) and isinstance(decoder, DECODERS[kind])
    assert (encoder.condition_dim, decoder.condition_dim) == (0, 2)
    y = torch.eye(2)
    assert decoder(encoder(images(32)).rsample(), y).shape == (2, 3, 32, 32)
    cvae_encoder, _ = face_networks(32, LATENT, kind=kind, condition_dim=2, encoder_condition_dim=2, channels=tiny(32))
    assert cvae_encoder(images(32), y).mean.shape == (2, LATENT)


# ----------------------------------------------------------------------------- gradients and blocks


@pytest.mark.parametrize("name", list(tiny_nets()))
def test_gradients_reach_every_parameter(name):
    net = tiny_nets()[name].train()
    out = run(name, net, 32)
    (out * torch.randn_like(out)).sum().backward()  # a random projection: no cancellation by symmetry
    dead = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"no gradient reaches {dead}"


@pytest.mark.parametrize("in_channels, out_channels", [(4, 4), (4, 6)])
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("before_skip", [True, False])
def test_residual_block_adds_its_skip(in_channels, out_channels, train, before_skip):
    block = ResidualBlock(in_channels, out_channels, activate_before_skip=before_skip).train(train)
    assert isinstance(block.skip, nn.Identity) == (in_channels == out_channels)
    with torch.no_grad():
        block.conv1.weight.zero_()
        block.conv2.weight.zero_()
        x = torch.randn(2, in_channels, 8, 8)
        out = block(x)
        # a zero residual branch: the skip alone, activated only where the activation follows the sum
        expected = block.skip(x) if before_skip else F.leaky_relu(block.skip(x), 0.2)
        assert torch.allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize("train", [True, False])
def test_residual_block_orders_compute_their_own_functions_from_the_same_weights(train):
    """The same weights in both orders: the authors' (activate the branch, then add the skip) and
    ResNet's (add, then activate), each equal to its formula written out here, and not to each other."""
    torch.manual_seed(0)
    official = ResidualBlock(4, 6, activate_before_skip=True)
    with torch.no_grad():
        for bn in (official.bn1, official.bn2):  # non-trivial statistics and affine parameters
            bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2.0), bn.weight.normal_(), bn.bias.normal_()
    resnet = ResidualBlock(4, 6, activate_before_skip=False)
    resnet.load_state_dict(official.state_dict())
    official.train(train), resnet.train(train)
    x = torch.randn(3, 4, 8, 8)

    def batch_norm(bn, h):
        if train:
            mean, var = h.mean((0, 2, 3), keepdim=True), h.var((0, 2, 3), unbiased=False, keepdim=True)
        else:
            mean, var = bn.running_mean.view(1, -1, 1, 1), bn.running_var.view(1, -1, 1, 1)
        return (h - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)

    with torch.no_grad():
        w = official.state_dict()
        h = F.leaky_relu(batch_norm(official.bn1, F.conv2d(x, w["conv1.weight"], padding=1)), 0.2)
        branch = batch_norm(official.bn2, F.conv2d(h, w["conv2.weight"], padding=1))
        skip = F.conv2d(x, w["skip.weight"])
        assert torch.allclose(official(x), skip + F.leaky_relu(branch, 0.2), atol=1e-5)
        assert torch.allclose(resnet(x), F.leaky_relu(skip + branch, 0.2), atol=1e-5)
        assert (official(x) - resnet(x)).abs().max() > 0.1


def test_residual_block_scale_sets_the_inner_width():
    block = ResidualBlock(8, 16, scale=0.5)
    assert block.conv1.out_channels == 8 and block.conv2.out_channels == 16
    assert block(torch.randn(2, 8, 4, 4)).shape == (2, 16, 4, 4)


# ----------------------------------------------------------------------------- memory format and precision


@pytest.mark.parametrize("name", list(tiny_nets()))
def test_channels_last_matches_contiguous(name):
    net = tiny_nets()[name].eval()
    with torch.no_grad():
        if name.endswith("decoder"):
            z = torch.randn(2, LATENT)
            expected = net(z)
            actual = net.to(memory_format=torch.channels_last)(z)
        else:
            x = images(32)
            expected = flat(net(x))
            actual = flat(net.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last)))
    assert torch.allclose(actual, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", list(tiny_nets()))
def test_bfloat16_autocast_runs_and_stays_finite(name):
    net = tiny_nets()[name].train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = run(name, net, 32)
    assert torch.isfinite(out.float()).all()
    out.float().square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_autocast_with_condition_and_channels_last():
    encoder, decoder = face_networks(32, LATENT, condition_dim=2, encoder_condition_dim=2, channels=tiny(32))
    y = torch.eye(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = decoder(encoder(images(32).to(memory_format=torch.channels_last), y).rsample(), y)
    assert x.shape == (2, 3, 32, 32) and torch.isfinite(x.float()).all()


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "build",
    [
        lambda: ResidualEncoder(48, 8),
        lambda: DCGANDecoder(256, 8),
        lambda: Discriminator(28),
        lambda: FaceClassifier(100, 2),
        lambda: face_networks(16, 8),
    ],
)
def test_unsupported_image_size_lists_the_supported_ones(build):
    with pytest.raises(ValueError, match=r"\(32, 64, 128\).*resize"):
        build()


def test_wrong_number_of_channels_says_how_many():
    with pytest.raises(ValueError, match=r"ResidualEncoder at 128 px needs 5 channel widths"):
        ResidualEncoder(128, 8, channels=(32, 64, 128))
    with pytest.raises(ValueError, match=r"DCGANDecoder at 32 px needs 3 channel widths"):
        DCGANDecoder(32, 8, channels=(64, 128, 256, 512))
    with pytest.raises(ValueError, match=r"needs 4 channel widths"):
        FaceClassifier(64, 2, channels=(8,))
    with pytest.raises(ValueError, match="positive integer"):
        Discriminator(32, channels=(8, 0, 16))


def test_other_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown kind 'vgg'"):
        Discriminator(32, kind="vgg")
    with pytest.raises(ValueError, match="unknown kind"):
        face_networks(32, 4, kind="resnet")
    with pytest.raises(ValueError, match="latent_dim"):
        ResidualEncoder(32, 0)
    with pytest.raises(ValueError, match="condition_dim"):
        DCGANDecoder(32, 4, condition_dim=-1)
    with pytest.raises(ValueError, match="dropout"):
        FaceClassifier(32, 2, dropout=1.0)


def test_wrong_inputs_get_the_check_images_message():
    encoder = ResidualEncoder(64, 4, tiny(64))
    with pytest.raises(ValueError, match=r"must have shape \(batch, 3, 64, 64\), got \(2, 3, 32, 32\)"):
        encoder(images(32))
    with pytest.raises(ValueError, match=r"must have shape \(batch, 3, 32, 32\)"):
        Discriminator(32, tiny(32))(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="floating-point"):
        FaceClassifier(32, 2, tiny(32))(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"z must have shape \(batch, 4\)"):
        DCGANDecoder(32, 4, tiny(32))(torch.randn(2, 5))
