"""latentlab: VAEs that learn interpretable latent subspaces from labels.

The folders show the architecture; each layer imports only the ones above it in this list:

* foundation: :mod:`latentlab.config` (run profile, device, data root, seeding), :mod:`latentlab.checks`
  (argument and data checks), :mod:`latentlab.distributions` (reparameterisation, KL, likelihoods),
  :mod:`latentlab.distributed` (torchrun data parallelism)
* :mod:`latentlab.data`        datasets (toy sets; digits; CelebA; synthetic faces; label splits)
* :mod:`latentlab.nets`        encoders and decoders: small MLP/conv, and residual/DCGAN nets for faces
* :mod:`latentlab.models`      one file per model, one interface for all (loss, update rule, edits,
  sliders), each registering its face builders (``face_model(name)``)
* :mod:`latentlab.training`    the one loop (``fit``), checkpoints, resume, the NaN guard, epoch selection
* :mod:`latentlab.evaluation`  metrics, the independent judge, FID, exact linear-Gaussian models
* :mod:`latentlab.editing`     edit helpers, Langevin sampling, latent sliders
* :mod:`latentlab.chapters`    what the book's chapters share: figure style, the face-editing runs
* :mod:`latentlab.commands`    ``python -m latentlab``: train, bench, bench-sliders, fetch-inception
"""

__version__ = "0.1.0"

from . import chapters, config, data, distributed, distributions, editing, evaluation, models, nets, training
from .config import describe_run, launch_note, profile
from .distributions import DiagonalGaussian
from .evaluation.judge import IndependentJudge
from .models import (
    CCVAE,
    CSVAE,
    CVAE,
    M2,
    VAC,
    VAE,
    AttributeClassifier,
    Classifier,
    CondVAEInfo,
    Control,
    IFcVAEGAN,
    IntroVAC,
    LatentVariableModel,
    face_model,
)
from .training import CheckpointError, NonFiniteLossError, fit, fit_selecting_epoch, load_checkpoint

__all__ = [
    "__version__",
    "config",
    "distributions",
    "nets",
    "models",
    "training",
    "evaluation",
    "editing",
    "chapters",
    "distributed",
    "IndependentJudge",
    "AttributeClassifier",
    "data",
    "describe_run",
    "launch_note",
    "profile",
    "DiagonalGaussian",
    "VAE",
    "CVAE",
    "CondVAEInfo",
    "CSVAE",
    "CCVAE",
    "M2",
    "VAC",
    "IntroVAC",
    "IFcVAEGAN",
    "Classifier",
    "Control",
    "LatentVariableModel",
    "face_model",
    "fit",
    "fit_selecting_epoch",
    "load_checkpoint",
    "CheckpointError",
    "NonFiniteLossError",
]
