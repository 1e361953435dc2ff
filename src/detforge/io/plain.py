"""Bounded checks of plain data a weights file embeds (model configs, yaml dicts, metadata).

A downloaded file can state any number: `nc: 10**12`, a width of 1e300, a list of a million
layers, a mapping nested ten thousand levels deep. These checks run before such values are
used (to build a model, allocate a head, print a table), iteratively, so that they cost time
proportional to the data and never recurse.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from detforge.errors import WeightsError
from detforge.io.limits import DEFAULT_LIMITS, Limits

MAX_STRING = 4096
MAX_NESTING = 16


def check_plain(value: Any, source: str | Path, what: str, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Refuse anything but dicts/lists/tuples of str, int, float, bool and None within `limits`.

    Numbers must be finite with magnitude at most `limits.max_config_int`, strings at most
    4096 characters, containers at most `limits.max_config_items` items in all, nesting at
    most 16 levels. Returns `value` unchanged; raises a one-line WeightsError naming the key.
    """
    stack: list[tuple[Any, str, int]] = [(value, what, 0)]
    count = 0
    while stack:
        item, where, depth = stack.pop()
        count += 1
        if count > limits.max_config_items or depth > MAX_NESTING:
            raise WeightsError(f"{source}: {what} is too large or too deeply nested")
        if isinstance(item, dict):
            if not all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in item):
                raise WeightsError(f"{source}: {where} has keys that are not strings")
            stack.extend((v, f"{where}.{str(k)[:40]}", depth + 1) for k, v in item.items())
        elif isinstance(item, (list, tuple)):
            stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(item))
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, (int, float)):
            if not abs(item) <= limits.max_config_int:  # `not <=` also refuses NaN
                raise WeightsError(f"{source}: {where} = {str(item)[:40]} is out of range")
        elif isinstance(item, str):
            if len(item) > MAX_STRING:
                raise WeightsError(f"{source}: {where} is a string of {len(item)} characters")
        else:
            raise WeightsError(f"{source}: {where} holds a {type(item).__name__}, not plain data")
    return value


def check_class_count(value: Any, source: str | Path, what: str, limits: Limits = DEFAULT_LIMITS) -> int:
    """A class count is an int in 1..`limits.max_classes` (not a bool, float or string)."""
    if type(value) is not int or not 1 <= value <= limits.max_classes:
        raise WeightsError(
            f"{source}: {what} = {str(value)[:40]} is not a class count (an integer 1..{limits.max_classes})"
        )
    return value


def check_names(value: Any, source: str | Path, what: str = "names") -> list[str]:
    """Class names: a list of strings (each at most 4096 characters)."""
    if not isinstance(value, list) or not all(isinstance(n, str) and len(n) <= MAX_STRING for n in value):
        raise WeightsError(f"{source}: {what} is not a list of strings; re-save the model")
    return value
