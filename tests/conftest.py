import os
import random
import shutil
import tempfile

import numpy as np
import pytest


def pytest_configure(config):
    """Converted GGUF files (`backends.hf`, gguf_cache) go to a folder of this test session's
    own, not the user's cache, unless COTSCOPE_CACHE_DIR names one."""
    if "COTSCOPE_CACHE_DIR" not in os.environ:
        config._cotscope_cache = tempfile.mkdtemp(prefix="cotscope-test-cache-")
        os.environ["COTSCOPE_CACHE_DIR"] = config._cotscope_cache


def pytest_unconfigure(config):
    if folder := getattr(config, "_cotscope_cache", None):
        shutil.rmtree(folder, ignore_errors=True)
        os.environ.pop("COTSCOPE_CACHE_DIR", None)


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
