"""Field checks shared by the settings dataclasses (config.py, model/config.py)."""

from __future__ import annotations


def check_fields(obj, names, ok, expected: str, error=ValueError, prefix: str = "") -> None:
    """Raise ``error`` for the first attribute of ``obj`` in ``names`` whose value fails
    ``ok(value)``: "<prefix><name> must be <expected>, got <value!r>"."""
    for name in names:
        value = getattr(obj, name)
        if not ok(value):
            raise error(f"{prefix}{name} must be {expected}, got {value!r}")


def positive_int(value) -> bool:
    return isinstance(value, int) and value >= 1


def positive(value) -> bool:
    return value > 0


def int_at_least(lo: int):
    """A predicate for check_fields: an int (not a bool) >= lo."""
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= lo
