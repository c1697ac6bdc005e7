"""latentlab: VAEs that learn interpretable latent subspaces from labels.

Public names only; each lives in its own module:

* :mod:`latentlab.config`        run profile, device, data root, seeding
* :mod:`latentlab.distributions` reparameterisation, KL divergences, likelihoods
* :mod:`latentlab.nets`          encoders and decoders (MLP, small conv)
* :mod:`latentlab.nets_faces`    residual (IntroVAE/IntroVAC) and DCGAN nets for 32-128 px faces, discriminator
* :mod:`latentlab.models`        one file per model, one interface for all; ``face_model(name)`` builds any for faces
* :mod:`latentlab.training`         the one training loop, checkpoints, resume, GPU switches
* :mod:`latentlab.distributed`   data-parallel training over processes started by torchrun
* :mod:`latentlab.exact`         linear-Gaussian models with exact evidence (for checking bounds)
* :mod:`latentlab.data`          datasets (toy sets; digits; CelebA; synthetic faces; label splits)
* :mod:`latentlab.metrics`       reconstruction, probes, edit success, identity and locality, for any model
* :mod:`latentlab.judge`         the independent attribute classifier that scores edits
* :mod:`latentlab.fid`           FID through torchmetrics, with a named fallback feature space
* :mod:`latentlab.face_editing`  every model trained on one face subset and scored the same way (import it by name)
* :mod:`latentlab.edit`          editing helpers shared by models
* :mod:`latentlab.langevin`      conditional sampling from p(z|y) by Langevin Monte Carlo (VAC, IntroVAC)
* :mod:`latentlab.plot`          image grids and study plots
* :mod:`latentlab.sliders`       latent sliders: live (ipywidgets) and static (HTML frames, no kernel)
"""

__version__ = "0.1.0"

from . import (
    config,
    data,
    distributed,
    distributions,
    edit,
    exact,
    fid,
    langevin,
    metrics,
    nets,
    nets_faces,
    plot,
    sliders,
)
from .config import describe_run, launch_note, profile
from .distributions import DiagonalGaussian
from .judge import IndependentJudge
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
from .training import CheckpointError, NonFiniteLossError, fit, load_checkpoint

__all__ = [
    "__version__",
    "config",
    "distributions",
    "exact",
    "nets",
    "nets_faces",
    "distributed",
    "fid",
    "IndependentJudge",
    "AttributeClassifier",
    "data",
    "metrics",
    "edit",
    "langevin",
    "plot",
    "sliders",
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
    "load_checkpoint",
    "CheckpointError",
    "NonFiniteLossError",
]
