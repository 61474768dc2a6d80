"""Backends chosen by string: ``mock``, ``hf/<id-or-path>``, ``gguf/<path>``,
``openai/<model>@<base-url>`` and short names such as ``smollm2-135m``.

Options follow a ``?``: ``hf/HuggingFaceTB/SmolLM2-135M-Instruct?dtype=float32&batch_size=8``.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl

from .._errors import CotscopeError
from .._registry import Registry
from .base import Backend

BackendFactory = Callable[[str, dict[str, str]], Backend]
_REGISTRY = Registry()
# Short names that expand to a full spec.
ALIASES: dict[str, Callable[[], str]] = {}
_CACHE: dict[str, Backend] = {}


def register_backend(prefix: str) -> Callable[[BackendFactory], BackendFactory]:
    """Register a factory for specs ``<prefix>`` or ``<prefix>/<rest>``."""
    return _REGISTRY.register(prefix)


def parse_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """Split ``prefix/rest?k=v&k2=v2`` into its parts."""
    body, _, query = spec.partition("?")
    prefix, _, rest = body.partition("/")
    try:
        opts = dict(parse_qsl(query, strict_parsing=True)) if query else {}
    except ValueError as exc:
        raise CotscopeError(f"bad options in model spec {spec!r}: {exc}") from exc
    return prefix, rest, opts


def resolve_alias(spec: str) -> str:
    body, sep, query = spec.partition("?")
    if body in ALIASES:
        return ALIASES[body]() + (sep + query if sep else "")
    return spec


def get_backend(spec: str, *, cache: bool = True) -> Backend:
    """Build (or reuse) the backend a spec string names.

    Raises:
        CotscopeError: for an unknown prefix, listing the known ones.
    """
    _ensure_builtins()
    full = resolve_alias(spec)
    if cache and full in _CACHE:
        return _CACHE[full]
    prefix, rest, opts = parse_spec(full)
    if prefix not in _REGISTRY:
        known = ", ".join(sorted([f"{p}/..." if p != "mock" else p for p in _REGISTRY] + list(ALIASES)))
        raise CotscopeError(f"unknown model {spec!r}: known forms are {known}")
    backend = _REGISTRY[prefix](rest, opts)
    backend.spec = full
    if cache:
        _CACHE[full] = backend
    return backend


def list_backends() -> list[str]:
    _ensure_builtins()
    return sorted(_REGISTRY) + sorted(ALIASES)


def _ensure_builtins() -> None:
    # Importing the modules registers them; heavy libraries load only when a backend is built.
    from . import hf, mock, openai  # noqa: F401
