"""Every model, one file each, on the interface in :mod:`latentlab.models.base`."""

from .base import Control, LatentVariableModel
from .vae import VAE

__all__ = ["Control", "LatentVariableModel", "VAE"]
