"""Readable ``help()``: classes built on a built-in (the int enums, the OSError errors)
list their own names in ``dir()``, not the built-in's dozens of methods, so pydoc shows
what cgbpf adds and nothing it inherits from ``int`` or ``OSError``."""

from __future__ import annotations

import enum


def own_names(cls: type) -> list[str]:
    """The names cgbpf's classes in ``cls``'s MRO define."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass.__module__.startswith("cgbpf"):
            names.update(vars(klass))
    return sorted(names)


class DocType(type):
    """Metaclass of the errors: ``dir()`` without what OSError brings."""

    def __dir__(cls) -> list[str]:
        return own_names(cls)


class DocEnumType(enum.EnumMeta):
    """Metaclass of the int enums: ``dir()`` is the members and cgbpf's own names."""

    def __dir__(cls) -> list[str]:
        return sorted({*own_names(cls), *cls.__members__})
