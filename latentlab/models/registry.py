"""Every model built for face images by name; each builder is registered in its model's own file.

``face_model("cvae", image_size=64)`` returns a CVAE whose encoder and decoder are the residual
networks of IntroVAE/IntroVAC sized for 64 px (``nets="dcgan"``: the information-factorization
paper's DCGAN-style nets). Labels are one binary attribute (``num_classes=2``) unless given.
Keyword arguments the builder does not use go to the model's constructor (``beta=...``, ...).

A model file registers its builders the way torchvision's ``@register_model`` does::

    @register_face_model("vae", needs_labels=False)
    def _vae(size, latent, classes, nets, kwargs): ...

and the command line, the benchmarks, the face chapters and their tests pick it up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..checks import check_count, check_face_image_size

#: latent size per image size when none is given (IntroVAC: 256 at 128 px)
DEFAULT_LATENT_DIM = {32: 64, 64: 128, 128: 256}
#: face images are not binary: the default likelihood is Laplace (L1 reconstruction, as in IntroVAC)
FACE_LIKELIHOOD = {"likelihood": "laplace", "decoder_std": 0.1}


@dataclass(frozen=True)
class FaceModelEntry:
    """A registered builder ``(image_size, latent_dim, num_classes, nets, kwargs) -> model`` and its labels."""

    build: Callable
    #: False for models that learn without labels (their batches may be ``(x,)``)
    needs_labels: bool = True
    #: True for models of k binary attributes at once (labels (N, k), ``num_labels=k``, attribute names)
    several_attributes: bool = False
    #: False for models that decode nothing (a classifier): no samples, edits or sliders
    generative: bool = True
    #: True for models that first train a simpler one for ``warmup_epochs`` epochs (IntroVAC: a plain VAC)
    warms_up: bool = False


#: name -> entry, filled by :func:`register_face_model` as the model files are imported
FACE_MODELS: dict[str, FaceModelEntry] = {}


def register_face_model(name: str, *, needs_labels: bool = True, several_attributes: bool = False,
                        generative: bool = True, warms_up: bool = False):
    """Register a face builder under ``name`` (a decorator, used beside the model it builds)."""

    def register(build: Callable) -> Callable:
        if name in FACE_MODELS:
            raise ValueError(f"a face model named {name!r} is already registered ({FACE_MODELS[name].build.__module__})")
        FACE_MODELS[name] = FaceModelEntry(build, needs_labels, several_attributes, generative, warms_up)
        return build

    return register


def face_model(
    name: str,
    *,
    image_size: int = 64,
    num_classes: int = 2,
    latent_dim: int | None = None,
    nets: str = "residual",
    channels: Sequence[int] | None = None,
    **kwargs,
):
    """Build model ``name`` (one of :data:`FACE_MODELS`) for ``image_size`` px RGB faces.

    ``channels`` overrides the networks' widths (one per pooling stage, e.g. ``(32, 64, 128)`` at
    32 px for a quick CPU run); the default is the papers' widths.
    """
    if name not in FACE_MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(FACE_MODELS)}")
    check_face_image_size(image_size)
    # None means the default; 0 is a mistake, not a request for the default
    latent_dim = DEFAULT_LATENT_DIM[image_size] if latent_dim is None else check_count(latent_dim, "latent_dim", 1)
    net_args = {"kind": nets, "channels": None if channels is None else tuple(channels)}
    return FACE_MODELS[name].build(image_size, latent_dim, num_classes, net_args, dict(kwargs))
