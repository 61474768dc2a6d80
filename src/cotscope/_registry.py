"""Name -> factory tables behind `register_backend`, `register_task`, `register_system`,
`register_intervention` and the experiments."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)


class Registry(dict[str, Callable]):
    """A dict of factories with a decorator that adds one under a name."""

    def register(self, name: str) -> Callable[[F], F]:
        def deco(factory: F) -> F:
            self[name] = factory
            return factory

        return deco
