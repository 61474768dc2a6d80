"""Give freed heap memory back to the system.

A decode loop frees and allocates tensors of ever-changing sizes (the KV of a batch that rows
join and leave, prompt passes of different widths). glibc's allocator keeps the freed pages,
so the process's resident memory grows far past what its live tensors hold (docs/performance.md). `malloc_trim` returns them; it is
called after a model loads and at most once a second while it decodes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time

TRIM_EVERY_S = 1.0
_state: dict = {}


def _trim_fn():
    if "fn" not in _state:
        fn = None
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            fn = libc.malloc_trim  # glibc only; musl, macOS and Windows have none
            fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
        except (OSError, AttributeError):
            fn = None
        _state["fn"], _state["last"] = fn, 0.0
    return _state["fn"]


def release_freed_memory(force: bool = False) -> bool:
    """Return freed heap pages to the system (at most once per `TRIM_EVERY_S` unless `force`);
    whether a trim ran."""
    fn = _trim_fn()
    now = time.monotonic()
    if fn is None or (not force and now - _state["last"] < TRIM_EVERY_S):
        return False
    fn(0)
    _state["last"] = time.monotonic()
    return True
