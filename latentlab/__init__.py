"""latentlab: VAEs that learn interpretable latent subspaces from labels.

Public names only; each lives in its own module:

* :mod:`latentlab.config`        run profile, device, data root, seeding
* :mod:`latentlab.distributions` reparameterisation, KL divergences, likelihoods
* :mod:`latentlab.nets`          encoders and decoders
* :mod:`latentlab.models`        one file per model, one interface for all
* :mod:`latentlab.train`         the one training loop, checkpoints, resume
* :mod:`latentlab.exact`         linear-Gaussian models with exact evidence (for checking bounds)
"""

__version__ = "0.1.0"

from . import config, distributions, exact, nets
from .config import describe_run, profile
from .distributions import DiagonalGaussian
from .models import VAE, Control, LatentVariableModel
from .train import CheckpointError, NonFiniteLossError, fit, load_checkpoint

__all__ = [
    "__version__",
    "config",
    "distributions",
    "exact",
    "nets",
    "describe_run",
    "profile",
    "DiagonalGaussian",
    "VAE",
    "Control",
    "LatentVariableModel",
    "fit",
    "load_checkpoint",
    "CheckpointError",
    "NonFiniteLossError",
]
