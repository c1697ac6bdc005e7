"""Networks: small MLP and convolutional encoders/decoders (toy data, digits) and the residual and
DCGAN networks for 32-128 px faces. Encoders return diagonal Gaussians, decoders likelihood parameters."""

from .faces import (
    CLASSIFIER_WIDTHS,
    DCGANDecoder,
    DCGANEncoder,
    DCGANTrunk,
    default_channels,
    Discriminator,
    face_networks,
    FaceClassifier,
    KINDS,
    num_stages,
    ResidualBlock,
    ResidualDecoder,
    ResidualEncoder,
    ResidualTrunk,
    WIDTHS,
)
from .small import MLP, ConvClassifier, ConvDecoder, ConvEncoder, GaussianHead, MLPDecoder, MLPEncoder

__all__ = ["MLP", "GaussianHead", "MLPEncoder", "MLPDecoder", "ConvEncoder", "ConvDecoder", "ConvClassifier",
           "WIDTHS", "CLASSIFIER_WIDTHS", "KINDS", "num_stages", "default_channels", "ResidualBlock", "ResidualTrunk", "DCGANTrunk", "ResidualEncoder", "ResidualDecoder", "DCGANEncoder", "DCGANDecoder", "Discriminator", "FaceClassifier", "face_networks"]
