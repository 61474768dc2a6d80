"""Where the shipped organism checkpoints live, and how a spec names one."""

from __future__ import annotations

import json
from pathlib import Path

from .._errors import CotscopeError
from .zoo import ORGANISMS

SHIPPED = Path(__file__).parent / "checkpoints"
CARD = "organism.json"


def checkpoint_dir(name: str) -> Path:
    """The directory of organism `name` (``faithful``, ``post-hoc``, ...) or of a
    checkpoint saved by ``cotscope organisms train`` (a path).

    Raises:
        CotscopeError: for an unknown name or a directory that is not a checkpoint.
    """
    path = SHIPPED / name if name in ORGANISMS else Path(name)
    if not (path / CARD).is_file() or not (path / "config.json").is_file():
        if name in ORGANISMS:
            raise CotscopeError(f"organism {name!r} has no checkpoint at {path}; train it: cotscope organisms train {name}")
        raise CotscopeError(
            f"unknown organism {name!r}: known are {', '.join(ORGANISMS)}, or a directory written by `cotscope organisms train`"
        )
    return path


def read_card(name: str) -> dict:
    """The card saved with a checkpoint: its spec, seed, losses and training time."""
    return json.loads((checkpoint_dir(name) / CARD).read_text())
