"""Evaluation: metrics for any model, the independent judge that scores edits, FID, and linear-Gaussian
models whose exact evidence checks the bounds."""

from . import exact, fid, judge, metrics

__all__ = ["exact", "fid", "judge", "metrics"]
