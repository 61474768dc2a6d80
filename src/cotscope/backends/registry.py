"""Backends chosen by string: ``mock``, ``hf/<id-or-path>``, ``gguf/<path>``,
``openai/<model>@<base-url>``, ``llamacpp/<path.gguf>``, ``organism/<name>``, short names such as ``smollm2-135m``, and
a user's provider by import path (``mypkg.mod:factory/<rest>``).

Options follow a ``?``: ``hf/HuggingFaceTB/SmolLM2-135M-Instruct?dtype=float32&batch_size=8``.
A provider module registers its factory when imported; the built-in ones are imported only
when one of their specs is used, so naming a backend loads no heavy library.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl

from .._errors import CotscopeError
from .._registry import Registry, is_import_path
from .base import Backend
from .model import Model

BackendFactory = Callable[[str, dict[str, str]], Backend]
# What a spec must satisfy before any weights load: raises CotscopeError, returns nothing.
BackendCheck = Callable[[str, dict[str, str]], None]
_REGISTRY = Registry("model", group="cotscope.models")
_CHECKS: dict[str, BackendCheck] = {}
# Short names that expand to a full spec: a function that returns the spec, by entry point.
ALIASES = Registry("model alias", group="cotscope.aliases")
_CACHE: dict[str, Backend] = {}


def register_backend(prefix: str, check: BackendCheck | None = None) -> Callable[[BackendFactory], BackendFactory]:
    """Register a factory for specs ``<prefix>`` or ``<prefix>/<rest>``, and optionally a
    cheap check of a spec (a file exists, a URL is well formed) that runs before any loading."""
    if check is not None:
        _CHECKS[prefix] = check
    return _REGISTRY.register(prefix)


def parse_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """Split ``prefix/rest?k=v&k2=v2`` into its parts."""
    body, _, query = spec.partition("?")
    prefix, _, rest = body.partition("/")
    try:
        opts = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=True)) if query else {}
    except ValueError as exc:
        raise CotscopeError(f"bad options in model spec {spec!r}: {exc}") from exc
    return prefix, rest, opts


def resolve_alias(spec: str) -> str:
    body, sep, query = spec.partition("?")
    if body in ALIASES.names():
        return ALIASES.lookup(body)() + (sep + query if sep else "")
    return spec


def _factory(spec: str) -> tuple[BackendFactory, str, str, dict[str, str]]:
    if not spec or not spec.strip():
        raise CotscopeError("empty model spec; known forms are " + _known())
    full = resolve_alias(spec)
    prefix, rest, opts = parse_spec(full)
    if prefix in _REGISTRY.names():
        return _REGISTRY.lookup(prefix), full, rest, opts
    if is_import_path(prefix):
        factory = _REGISTRY.lookup(prefix)
        if not callable(factory):
            raise CotscopeError(f"model provider {prefix!r} is not callable")
        return factory, full, rest, opts
    raise CotscopeError(f"unknown model {spec!r}: known forms are {_known()}")


def check_backend(spec: str) -> str:
    """Check a spec without loading a model: its provider exists, its file or checkpoint is
    there, its options parse. Returns the spec with aliases resolved.

    Raises:
        CotscopeError: naming the spec and what is wrong with it.
    """
    _, full, rest, opts = _factory(spec)
    prefix = parse_spec(full)[0]
    if prefix in _CHECKS:
        _CHECKS[prefix](rest, opts)
    return full


def get_backend(spec: str, *, cache: bool = True) -> Backend:
    """Build (or reuse) the model a spec string names: its provider inside a `Model`.

    Raises:
        CotscopeError: for an unknown prefix, listing the known ones.
    """
    factory, full, rest, opts = _factory(spec)
    if cache and full in _CACHE:
        return _CACHE[full]
    provider = factory(rest, opts)
    if not isinstance(provider, Backend):
        raise CotscopeError(f"model provider for {spec!r} returned {type(provider).__name__}, not a cotscope Backend")
    provider.spec = full
    model = Model(provider)
    if cache:
        _CACHE[full] = model
    return model


def _known() -> str:
    return ", ".join(sorted([f"{p}/..." if p != "mock" else p for p in _REGISTRY.names()] + ALIASES.names()))


def list_backends() -> list[str]:
    return _REGISTRY.names() + ALIASES.names()
