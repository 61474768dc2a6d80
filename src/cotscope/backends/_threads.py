"""Cap torch's threads to the cores this process may use."""

from __future__ import annotations

import os


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def cap_torch_threads() -> None:
    import torch

    n = available_cores()
    if torch.get_num_threads() > n:
        torch.set_num_threads(n)
