"""A registry by name for interchangeable parts (reducers, temporal mixers, decoders, samplers)."""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

from liteframe.errors import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator (or call on an instance) adding `item` under `name`; a name is registered once."""
        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            return item

        return add

    def get(self, name: str) -> T:
        """The item called `name`; an unknown name (usually the user's) is an `InputError` listing the choices."""
        if name not in self._items:
            raise InputError(f"unknown {self.kind} {name!r}; choose from {', '.join(self.names())}")
        return self._items[name]

    def names(self) -> list[str]:
        """Registered names in registration order: what the CLI offers and benchmarks iterate over."""
        return list(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
