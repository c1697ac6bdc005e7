"""Every model, one file each, on the interface in :mod:`latentlab.models.base`; each model file
also registers its face builders (:mod:`latentlab.models.registry`)."""

from .base import LatentVariableModel
from .ccvae import CCVAE
from .classifier import AttributeClassifier, Classifier
from .condvae_info import CondVAEInfo
from .csvae import CSVAE
from .cvae import CVAE
from .ifcvae_gan import IFcVAEGAN
from .introvac import IntroVAC
from .m2 import M2
from .registry import FACE_MODELS, face_model, register_face_model
from .space import Control, SliderSpace
from .vac import VAC
from .vae import VAE

__all__ = ["Control", "SliderSpace", "LatentVariableModel", "VAE", "CVAE", "CondVAEInfo", "CSVAE", "CCVAE", "M2", "VAC",
           "IntroVAC", "IFcVAEGAN", "Classifier", "AttributeClassifier", "FACE_MODELS", "face_model", "register_face_model"]
