"""Name registries: workloads, optimizers, kernel variants and meters are looked up by name.

Registering a name twice is an error; an unknown name fails with the known names and the
nearest match. Standard library only (this module travels in the agent bundle).
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Generic, Iterator, Mapping, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that no registry entry has; the message lists the known ones."""

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        near = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        self.kind, self.name, self.known = kind, name, known
        super().__init__(f"unknown {kind} {name!r}{hint} (known: {', '.join(known)})")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class Registry(Generic[T]):
    """A mapping from names to entries, filled by a decorator."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def deco(entry: T) -> T:
            return self.add(name, entry)

        return deco

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self.names()) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


def kernel_names(optimizers: Registry[Any]) -> list[str]:
    """Every kernel variant name any optimizer in ``optimizers`` offers (entries with ``kernels``)."""
    return sorted({k for name in optimizers for k in optimizers.get(name).kernels})


def merge_options(kind: str, name: str, what: str, defaults: Mapping[str, Any],
                  overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """``defaults`` updated by ``overrides``; a key the defaults lack is refused, listing them."""
    merged = dict(defaults)
    for key, value in (overrides or {}).items():
        if key not in defaults:
            raise ValueError(f"{kind} {name!r} has no {what} {key!r} "
                             f"(it has: {', '.join(sorted(defaults))})")
        merged[key] = value
    return merged
