"""Every model, one file each, on the interface in :mod:`latentlab.models.base`."""

from .base import Control, LatentVariableModel
from .condvae_info import CondVAEInfo
from .csvae import CSVAE
from .cvae import CVAE
from .vae import VAE

__all__ = ["Control", "LatentVariableModel", "VAE", "CVAE", "CondVAEInfo", "CSVAE"]
