"""Every model, one file each, on the interface in :mod:`latentlab.models.base`."""

from .base import Control, LatentVariableModel
from .ccvae import CCVAE
from .classifier import AttributeClassifier, Classifier
from .condvae_info import CondVAEInfo
from .csvae import CSVAE
from .cvae import CVAE
from .ifcvae_gan import IFcVAEGAN
from .introvac import IntroVAC
from .m2 import M2
from .vac import VAC
from .vae import VAE

__all__ = ["Control", "LatentVariableModel", "VAE", "CVAE", "CondVAEInfo", "CSVAE", "CCVAE", "M2", "VAC", "IntroVAC", "IFcVAEGAN", "Classifier", "AttributeClassifier"]
