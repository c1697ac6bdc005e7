"""``python -m latentlab ...`` (and ``torchrun ... -m latentlab ...``): see :mod:`latentlab.commands.cli`."""

from .commands.cli import main

main()
