"""Errors that cotscope raises on purpose, each naming the problem."""

from __future__ import annotations


class CotscopeError(Exception):
    """An error a user can act on: bad input, a missing file or dependency, a dead server."""


class MissingDependency(CotscopeError):
    """An optional dependency is not installed; the message gives the exact install line."""


class EngineDied(CotscopeError):
    """The process an engine ran in died (a native crash, killed for memory): the call is lost,
    what was saved before it is kept, and running the same command again resumes."""


def first_error(exc) -> tuple[str, dict]:
    """The first error of a pydantic ValidationError: where it is (a dotted path) and the error."""
    err = exc.errors()[0]
    return ".".join(str(p) for p in err["loc"]), err


def load_module(name: str):
    """Import a module by name: the one place cotscope imports a module named by a string."""
    import importlib

    return importlib.import_module(name)


def require(module: str, extra: str, pip_line: str | None = None):
    """Import an optional dependency or raise `MissingDependency` with the install line.

    Args:
        module: Module to import, e.g. ``"transformers"``.
        extra: The cotscope extra that provides it, e.g. ``"hf"``.
        pip_line: Install command to show instead of the extra's.
    """
    try:
        return load_module(module)
    except ImportError as exc:
        hint = pip_line or f"pip install 'cotscope[{extra}]'"
        raise MissingDependency(f"{module!r} is needed here but not installed: {hint}") from exc
