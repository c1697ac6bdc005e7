"""What the book's chapters share: figure style and image grids (``plot``), and the face-editing
chapters' runs (``face_editing``: every model trained on one face subset and scored the same way;
import it by name, ``from latentlab.chapters import face_editing``, as only those chapters need it)."""

from . import plot

__all__ = ["plot"]
