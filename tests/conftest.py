import random

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _seed_everything():
    """One place seeds every random generator the tests touch."""
    random.seed(0)
    np.random.seed(0)
    try:
        import torch

        torch.manual_seed(0)
    except ImportError:
        pass
