"""Argument checks at the public entry points: a wrong Python type is a ``TypeError``
that names the call, the parameter and what it takes, not a traceback from deep inside."""

from __future__ import annotations

import os
from typing import Any


def arg(call: str, name: str, value: Any, types: type | tuple[type, ...], what: str, *,
        none: bool = False) -> None:
    """Raise ``TypeError`` unless ``value`` is one of ``types`` (or None if ``none``)."""
    if (value is None and none) or (isinstance(value, types) and not (
            isinstance(value, bool) and bool not in (types if isinstance(types, tuple)
                                                     else (types,)))):
        return
    raise TypeError(f"{call}(): {name} must be {what}"
                    f"{' or None' if none else ''}, not {type(value).__name__}")


def path(call: str, name: str, value: Any) -> str:
    """A path argument: ``str`` or ``os.PathLike[str]``."""
    arg(call, name, value, (str, os.PathLike), "a path (str or os.PathLike)")
    result = os.fspath(value)
    if not isinstance(result, str):
        raise TypeError(f"{call}(): {name} must be a str path, not {type(result).__name__}")
    return result
