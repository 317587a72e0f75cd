"""A plain name -> object registry, shared by nets, losses and tasks.

Example:
    >>> NETS = Registry("net")
    >>> @NETS.register("tiny")
    ... def tiny(): ...
    >>> NETS.get("tiny") is tiny
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from img2img.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; an unknown name raises and lists the valid ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            valid = ", ".join(sorted(self._entries))
            raise KeyError(f"unknown {self.kind} {name!r}; choose one of: {valid}") from None

    def require(self, name: str, *, key: str) -> None:
        """Raises ConfigError, naming the config `key`, unless `name` is registered: how a config
        section refuses an unknown net or loss when it is built rather than when training starts."""
        if name not in self._entries:
            raise ConfigError(f"config key {key}: unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}")

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
