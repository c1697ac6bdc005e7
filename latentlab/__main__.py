"""``python -m latentlab ...`` (and ``torchrun ... -m latentlab ...``): see :mod:`latentlab.cli`."""

from .cli import main

main()
