"""The CPU this process runs on: the cores it may use, its feature flags; torch's threads capped to them."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path


FLAGS_ENV = "COTSCOPE_CPU_FLAGS"


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (avx2, avx512f, amx_tile, ...); empty elsewhere.
    ``$COTSCOPE_CPU_FLAGS`` (space-separated) stands in for them, for a benchmark that runs a
    lesser CPU's code paths (``bench/audit.py --as-avx2``)."""
    named = os.environ.get(FLAGS_ENV)
    return frozenset(named.split()) if named is not None else real_cpu_flags()


@cache
def real_cpu_flags() -> frozenset[str]:
    """The flags /proc/cpuinfo lists, whatever ``$COTSCOPE_CPU_FLAGS`` says."""
    try:
        line = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
    except OSError:
        return frozenset()
    return frozenset(line.partition(":")[2].split())


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


ONEDNN_CACHE = "64"


def cap_onednn_cache() -> None:
    """Keep oneDNN's cache of compiled matrix kernels to 64 entries (its default is 1024), unless
    the user set ``ONEDNN_PRIMITIVE_CACHE_CAPACITY``. torch's CPU matrix products go through
    oneDNN, which compiles and keeps one kernel per shape; batches of varying lengths make
    hundreds of shapes. On the default audit, run back to back, the full cache took 2082 MiB at
    peak and 64 entries 1741 MiB, at the same time (303.8 s and 303.6 s). oneDNN reads the variable at its first kernel, so
    this must run before the process multiplies a matrix on the CPU."""
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", ONEDNN_CACHE)
