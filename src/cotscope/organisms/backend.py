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

    # float32 unless asked otherwise, on any device: an organism is a few million weights, so
    # its passes are bound by overheads, not arithmetic (on an H100 bfloat16 took twice as long),
    # and its recorded ground truth was measured in float32.
    return HFBackend.load(str(checkpoint_dir(rest)), opts={"dtype": "float32"} | opts)
