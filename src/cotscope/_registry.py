"""Name -> factory tables behind every ``register_*`` decorator, plug-ins by entry point and
by import path.

A registry knows three kinds of names: those registered with its decorator; those an installed
package declares under the registry's entry-point group (``cotscope.experiments``,
``cotscope.systems``, ...; cotscope's own built-ins are declared the same way in its
``pyproject.toml``), loaded the first time one is asked for, so that listing them loads no
heavy library; and ``package.module:attr`` import paths, resolved from the current directory
first, as a user running a command beside their own file expects. An entry point names either
a module that registers the name when imported, or the factory itself.
"""

from __future__ import annotations

import functools
import os
import types
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ._errors import CotscopeError, load_module

F = TypeVar("F")


_DOTTED = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")


def is_import_path(name: str) -> bool:
    """``package.module:attr``: dotted Python names on each side of one colon."""
    module, sep, attr = name.partition(":")
    return bool(sep and _DOTTED.match(module) and _DOTTED.match(attr))


@functools.cache
def entry_points(group: str) -> dict[str, Any]:
    """The entry points installed packages declare in `group`, by name (the first one wins)."""
    from importlib.metadata import entry_points as installed

    found: dict[str, Any] = {}
    for ep in installed(group=group):
        found.setdefault(ep.name, ep)
    return found


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
        mod = load_module(module)
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
        kind: What the registry holds, for error messages ("experiment", "model").
        group: The entry-point group whose names it knows (``cotscope.experiments``).
    """

    def __init__(self, kind: str = "plug-in", group: str | None = None) -> None:
        super().__init__()
        self.kind = kind
        self.group = group

    @property
    def builtins(self) -> dict[str, Any]:
        """Names installed packages declare for this registry (cotscope's own included)."""
        return entry_points(self.group) if self.group else {}

    def register(self, name: str) -> Callable[[F], F]:
        def deco(factory: F) -> F:
            self[name] = factory
            return factory

        return deco

    def names(self) -> list[str]:
        """Every known name, those of entry points included, without importing anything."""
        return sorted(set(self) | set(self.builtins))

    def lookup(self, name: str) -> Any:
        """The factory for a name or an import path.

        Raises:
            CotscopeError: for an unknown name (listing the known ones), a bad import path, or
                an entry point that cannot be loaded.
        """
        if name in self:
            return self[name]
        if name in self.builtins:
            ep = self.builtins[name]
            try:
                obj = ep.load()
            except (ImportError, AttributeError) as exc:
                raise CotscopeError(f"{self.kind} {name!r} (entry point {ep.value!r} in {self.group}) cannot be loaded: {exc}") from exc
            if name not in self:  # a module registers its names when imported; else the object is the factory
                if isinstance(obj, types.ModuleType):
                    raise CotscopeError(f"{self.kind} {name!r}: module {ep.value!r} ({self.group}) registers no such name")
                self[name] = obj
            return self[name]
        if is_import_path(name):
            return load_object(name, self.kind)
        known = ", ".join(self.names())
        raise CotscopeError(f"unknown {self.kind} {name!r}; known: {known}, or package.module:attr")

    def load_all(self) -> Iterator[tuple[str, Any]]:
        """Load every known name and yield (name, factory) pairs."""
        for name in self.names():
            yield name, self.lookup(name)
