"""Editing: moving through the labelled subspaces. Edit helpers, Langevin sampling from p(z|y), and
latent sliders (live widgets and static HTML), whose axes each model defines (``slider_space``)."""

from . import edit, langevin, sliders

__all__ = ["edit", "langevin", "sliders"]
