"""Every model, built for face images by name: what the command line, the benchmark and the face chapters share.

``face_model("cvae", image_size=64)`` returns a CVAE whose encoder and decoder are the residual
networks of IntroVAE/IntroVAC sized for 64 px (``nets="dcgan"``: the information-factorization
paper's DCGAN-style nets). Labels are one binary attribute (``num_classes=2``) unless given.
Keyword arguments the builder does not use go to the model's constructor (``beta=...``, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .checks import check_count
from .models import (
    CCVAE,
    CSVAE,
    CVAE,
    M2,
    VAC,
    VAE,
    Classifier,
    CondVAEInfo,
    IFcVAEGAN,
    IntroVAC,
    LatentVariableModel,
)
from .nets import MLP
from .nets_faces import FaceClassifier, face_networks

#: latent size per image size when none is given (IntroVAC: 256 at 128 px)
DEFAULT_LATENT_DIM = {32: 64, 64: 128, 128: 256}
#: face images are not binary: the default likelihood is Laplace (L1 reconstruction, as in IntroVAC)
FACE_LIKELIHOOD = {"likelihood": "laplace", "decoder_std": 0.1}


def _vae(size, latent, classes, nets, kwargs):
    encoder, decoder = face_networks(size, latent, **nets)
    return VAE(encoder, decoder, **{**FACE_LIKELIHOOD, **kwargs})


def _cvae(size, latent, classes, nets, kwargs):
    encoder, decoder = face_networks(size, latent, **nets, condition_dim=classes, encoder_condition_dim=classes)
    return CVAE(encoder, decoder, num_classes=classes, **{**FACE_LIKELIHOOD, **kwargs})


def _condvae_info(size, latent, classes, nets, kwargs):
    encoder, decoder = face_networks(size, latent, **nets, condition_dim=classes)
    head = FaceClassifier(size, classes, **nets)
    auxiliary = MLP(latent, (256, 256), classes)
    return CondVAEInfo(encoder, decoder, head, auxiliary, num_classes=classes, **{**FACE_LIKELIHOOD, **kwargs})


def _csvae(size, latent, classes, nets, kwargs):
    num_labels, w_dim = 1, kwargs.pop("w_dim", 2)  # one binary attribute, its own w subspace
    z_encoder, _ = face_networks(size, latent, **nets)
    w_encoder, _ = face_networks(size, w_dim * num_labels, **nets, encoder_condition_dim=num_labels)
    _, decoder = face_networks(size, latent + w_dim * num_labels, **nets)  # p(x | z, w) reads both parts
    adversary = MLP(latent, (256, 256), num_labels)
    return CSVAE(
        z_encoder, w_encoder, decoder, adversary, num_labels=num_labels, w_dim=w_dim, **{**FACE_LIKELIHOOD, **kwargs}
    )


def _ccvae(size, latent, classes, nets, kwargs):
    kwargs.setdefault("learning_rate", 1e-4)  # the official CelebA setting; 1e-3 drove q(z|x)'s KL to NaN on faces
    # The official Laplace(., 1), not the zoo's scale 0.1: CCVAE's bound needs log p(x|z) < 0 (see
    # the CCVAE docstring); at scale 0.1 its own classifier ended up inverted on faces (accuracy 0).
    kwargs.setdefault("decoder_std", 1.0)
    encoder, decoder = face_networks(size, latent, **nets)
    return CCVAE(encoder, decoder, num_classes=classes, **{**FACE_LIKELIHOOD, **kwargs})


def _m2(size, latent, classes, nets, kwargs):
    encoder, decoder = face_networks(size, latent, **nets, condition_dim=classes, encoder_condition_dim=classes)
    return M2(
        encoder, decoder, FaceClassifier(size, classes, **nets), num_classes=classes, **{**FACE_LIKELIHOOD, **kwargs}
    )


def _vac_family(model_class):
    """VAC or IntroVAC: k binary attributes (``num_labels``), so ``num_classes`` must be 2."""

    def build(size, latent, classes, nets, kwargs):
        if classes != 2:
            raise ValueError(
                f"{model_class.__name__.lower()} models binary attributes (num_labels=k of them), "
                f"so num_classes must be 2, got {classes}"
            )
        encoder, decoder = face_networks(size, latent, **nets)
        return model_class(encoder, decoder, **kwargs)

    return build


def _ifcvae_gan(variant):
    """IFcVAE-GAN (or one of its ablations) with the zoo's networks: residual unless ``nets="dcgan"``."""

    def build(size, latent, classes, nets, kwargs):
        return IFcVAEGAN.for_faces(
            size, latent, num_classes=classes, nets=nets["kind"], channels=nets["channels"], variant=variant, **kwargs
        )

    return build


def _classifier(size, latent, classes, nets, kwargs):
    return Classifier(FaceClassifier(size, classes, **nets), num_classes=classes, **kwargs)


BUILDERS: dict[str, Callable[..., LatentVariableModel]] = {
    "vae": _vae,
    "cvae": _cvae,
    "condvae_info": _condvae_info,
    "csvae": _csvae,
    "ccvae": _ccvae,
    "m2": _m2,
    "vac": _vac_family(VAC),
    "introvac": _vac_family(IntroVAC),
    "ifcvae_gan": _ifcvae_gan("ifcvae_gan"),
    "ifcvae_gan_without_aux": _ifcvae_gan("without_aux"),
    "cvae_gan": _ifcvae_gan("cvae_gan"),
    "classifier": _classifier,
}
#: models that learn without labels (their batches may be ``(x,)``)
UNLABELLED_MODELS = ("vae",)


def face_model(
    name: str,
    *,
    image_size: int = 64,
    num_classes: int = 2,
    latent_dim: int | None = None,
    nets: str = "residual",
    channels: Sequence[int] | None = None,
    **kwargs,
) -> LatentVariableModel:
    """Build model ``name`` (one of :data:`BUILDERS`) for ``image_size`` px RGB faces.

    ``channels`` overrides the networks' widths (one per pooling stage, e.g. ``(32, 64, 128)`` at
    32 px for a quick CPU run); the default is the papers' widths.
    """
    if name not in BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(BUILDERS)}")
    if image_size not in DEFAULT_LATENT_DIM:
        raise ValueError(f"face models take 32, 64 or 128 px images, got {image_size}; resize the images")
    # None means the default; 0 is a mistake, not a request for the default
    latent_dim = DEFAULT_LATENT_DIM[image_size] if latent_dim is None else check_count(latent_dim, "latent_dim", 1)
    net_args = {"kind": nets, "channels": None if channels is None else tuple(channels)}
    return BUILDERS[name](image_size, latent_dim, num_classes, net_args, dict(kwargs))
