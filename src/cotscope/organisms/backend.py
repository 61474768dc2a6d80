"""The ``organism/<name>`` provider: a shipped or retrained organism checkpoint, run through
the transformers backend."""

from __future__ import annotations

from ..backends.base import Backend
from ..backends.registry import register_backend
from .checkpoints import checkpoint_dir


def _check(rest: str, opts: dict[str, str]) -> None:
    checkpoint_dir(rest)


@register_backend("organism", check=_check)
def organism_backend(rest: str, opts: dict[str, str]) -> Backend:
    from ..backends.hf import HFBackend

    return HFBackend.load(str(checkpoint_dir(rest)), opts=opts)
