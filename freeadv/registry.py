"""One way to register an entry of any kind: a training method, an attack kind, a model builder.

A Registry is a dict of name -> entry with one ``add`` that refuses an empty or taken name (two
entries under one name would make a config or a result file ambiguous) and one ``pick`` whose
error names the value and the choices. Each kind keeps its own declaration checks in its own
``register_*`` decorator and calls ``add`` last.
"""
from __future__ import annotations

from typing import Generic, TypeVar

from .errors import UserError

T = TypeVar("T")


class Registry(dict, Generic[T]):
    """Entries of one ``kind`` by name, in registration order."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def add(self, name: str, entry: T) -> T:
        if not isinstance(name, str) or not name:
            raise TypeError(f"a {self.kind} needs a non-empty name, got {name!r}")
        if name in self:
            raise TypeError(f"{self.kind} {name!r} is already registered ({self[name]!r})")
        self[name] = entry
        return entry

    def pick(self, name: str, what: str) -> T:
        """The entry of ``name``; else a UserError: '<what> has bad value ...: expected one of ...'."""
        if name not in self:
            raise UserError(f"{what} has bad value {name!r}: expected one of {', '.join(self)}")
        return self[name]
