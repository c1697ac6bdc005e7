"""latentlab: VAEs that learn interpretable latent subspaces from labels.

Public names only; each lives in its own module:

* :mod:`latentlab.config`        run profile, device, data root, seeding
* :mod:`latentlab.distributions` reparameterisation, KL divergences, likelihoods
* :mod:`latentlab.nets`          encoders and decoders
* :mod:`latentlab.models`        one file per model, one interface for all
* :mod:`latentlab.train`         the one training loop, checkpoints, resume
* :mod:`latentlab.exact`         linear-Gaussian models with exact evidence (for checking bounds)
* :mod:`latentlab.data`          datasets (toy sets; MNIST and the scikit-learn digits; label splits)
* :mod:`latentlab.metrics`       reconstruction, probes, edit success, for any model
* :mod:`latentlab.edit`          editing helpers shared by models
* :mod:`latentlab.plot`          image grids and study plots
"""

__version__ = "0.1.0"

from . import config, data, distributions, edit, exact, metrics, nets, plot
from .config import describe_run, profile
from .distributions import DiagonalGaussian
from .models import CCVAE, CSVAE, CVAE, M2, VAE, Classifier, CondVAEInfo, Control, LatentVariableModel
from .train import CheckpointError, NonFiniteLossError, fit, load_checkpoint

__all__ = [
    "__version__",
    "config",
    "distributions",
    "exact",
    "nets",
    "data",
    "metrics",
    "edit",
    "plot",
    "describe_run",
    "profile",
    "DiagonalGaussian",
    "VAE",
    "CVAE",
    "CondVAEInfo",
    "CSVAE",
    "CCVAE",
    "M2",
    "Classifier",
    "Control",
    "LatentVariableModel",
    "fit",
    "load_checkpoint",
    "CheckpointError",
    "NonFiniteLossError",
]
