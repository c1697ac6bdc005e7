import sys
from pathlib import Path

import pytest
import torch

# the development tools the tests check (the book check, the slider screenshot) live in tools/
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))


@pytest.fixture(autouse=True)
def _fixed_seed():
    torch.manual_seed(0)
    yield
