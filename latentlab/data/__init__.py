"""Datasets: tensors ``x`` (float32) and labels ``y`` (long), already split into train and test."""

from .toy import ToyData, circles, moons, swiss_roll

__all__ = ["ToyData", "circles", "moons", "swiss_roll"]
