"""Name -> factory tables behind every ``register_*`` decorator, and plug-ins by import path.

A registry knows three kinds of names: those registered with its decorator, built-in ones
whose module is imported the first time one is asked for (so that listing them loads no heavy
library), and ``package.module:attr`` import paths, resolved from the current directory first,
as a user running a command beside their own file expects.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ._errors import CotscopeError

F = TypeVar("F")


_DOTTED = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")


def is_import_path(name: str) -> bool:
    """``package.module:attr``: dotted Python names on each side of one colon."""
    module, sep, attr = name.partition(":")
    return bool(sep and _DOTTED.match(module) and _DOTTED.match(attr))


def load_object(path: str, what: str = "plug-in") -> Any:
    """Import ``package.module:attr`` with the current directory on the import path.

    Raises:
        CotscopeError: naming the path when the module or the attribute is missing.
    """
    if not is_import_path(path):
        raise CotscopeError(f"{what} {path!r} is not an import path (want package.module:name)")
    module, _, attr = path.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise CotscopeError(f"cannot import {what} {path!r}: {exc} (looked in {cwd} and the installed packages)") from exc
    obj: Any = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise CotscopeError(f"cannot import {what} {path!r}: module {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


class Registry(dict[str, Any]):
    """A dict of factories with a decorator that adds one under a name.

    Args:
        kind: What the registry holds, for error messages ("experiment", "backend").
        builtins: Name -> module that registers it when imported.
    """

    def __init__(self, kind: str = "plug-in", builtins: dict[str, str] | None = None) -> None:
        super().__init__()
        self.kind = kind
        self.builtins = dict(builtins or {})

    def register(self, name: str) -> Callable[[F], F]:
        def deco(factory: F) -> F:
            self[name] = factory
            return factory

        return deco

    def names(self) -> list[str]:
        """Every known name, built-in ones included, without importing anything."""
        return sorted(set(self) | set(self.builtins))

    def lookup(self, name: str) -> Any:
        """The factory for a name or an import path.

        Raises:
            CotscopeError: for an unknown name (listing the known ones) or a bad import path.
        """
        if name in self:
            return self[name]
        if name in self.builtins:
            importlib.import_module(self.builtins[name])
            if name in self:
                return self[name]
        if is_import_path(name):
            return load_object(name, self.kind)
        known = ", ".join(self.names())
        raise CotscopeError(f"unknown {self.kind} {name!r}; known: {known}, or package.module:attr")

    def load_all(self) -> Iterator[tuple[str, Any]]:
        """Import every built-in and yield (name, factory) pairs."""
        for name in self.names():
            yield name, self.lookup(name)
