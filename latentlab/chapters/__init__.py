"""What the book's chapters share: figure style and image grids (``plot``), and the face-editing
chapters' runs (``face_editing``: every model trained on one face subset and scored the same way)."""

from . import face_editing, plot

__all__ = ["face_editing", "plot"]
