"""Checks of configuration values, with the messages users see (``ConfigError``, naming the value).

Imports nothing from ``scanner`` but ``errors``, so every layer can use it.
"""

from __future__ import annotations

import math

from scanner.errors import ConfigError

__all__ = ["require_positive"]


def require_positive(name: str, value: object, *, integer: bool = False, finite: bool = False) -> None:
    """``ConfigError`` unless ``value`` is a number above 0 (an ``int`` with ``integer``; not
    infinite with ``finite``). Booleans are not numbers here. NaN is never positive."""
    kind = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
        raise ConfigError(f"{name} must be a positive {'integer' if integer else 'number'}, got {value!r}")
    if finite and not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value!r}")
