"""Argument checks shared by every config and public function: one set, one wording.

Each check returns the value in its canonical type (an `int`, a `float`, a tuple) or raises
`ValueError` with a message that names the argument, shows what was given and says what to give
instead, before any data is read or any model is trained. Strings are never accepted where a
sequence is expected: `tuple("15")` would silently become ('1', '5').
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import math
import operator
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

T = TypeVar("T")


def _suffix(hint: str) -> str:
    return f"; {hint}" if hint else ""


def check_int(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None, hint: str = "") -> int:
    """`value` as a Python int when it is an integer in [minimum, maximum], else ValueError.

    Accepts Python and numpy integers (anything with `__index__`), never bools or floats, even
    integral ones (`epochs=10.0` is refused: a float here is usually a typo for another field).
    """
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got the bool {value!r}{_suffix(hint)}")
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {type(value).__name__} {value!r}{_suffix(hint)}") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        if minimum is not None and maximum is not None:
            bound = f"in {minimum}..{maximum}"
        else:
            bound = f">= {minimum}" if minimum is not None else f"<= {maximum}"
        raise ValueError(f"{name} must be an integer {bound}, got {value}{_suffix(hint)}")
    return value


def check_number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
    hint: str = "",
) -> float:
    """`value` as a finite float (ints accepted, bools and strings refused) within the bounds.

    `positive=True` requires value > 0; `minimum` / `maximum` are inclusive bounds.
    """
    if isinstance(value, bool) or isinstance(value, (str, bytes)):
        raise ValueError(f"{name} must be a number, got {type(value).__name__} {value!r}{_suffix(hint)}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {type(value).__name__} {value!r}{_suffix(hint)}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}{_suffix(hint)}")
    if positive and number <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}{_suffix(hint)}")
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be >= {minimum:g}, got {value!r}{_suffix(hint)}")
    if maximum is not None and number > maximum:
        raise ValueError(f"{name} must be <= {maximum:g}, got {value!r}{_suffix(hint)}")
    return number


def check_choice(name: str, value: Any, choices: Iterable[T], *, hint: str = "") -> T:
    """`value` when it is one of `choices`, else ValueError listing them (and the closest match)."""
    choices = tuple(choices)
    if isinstance(value, (str, int, float, bool, type(None))) and value in choices:
        return value
    close = difflib.get_close_matches(str(value), [str(choice) for choice in choices], n=1)
    guess = f" (did you mean {close[0]!r}?)" if close else ""
    listed = ", ".join(repr(choice) for choice in choices)
    raise ValueError(f"unknown {name} {value!r}{guess}; choose one of {listed}{_suffix(hint)}")


def check_sequence(
    name: str,
    value: Any,
    item: Callable[[str, Any], T] | None = None,
    *,
    min_length: int = 1,
    example: str = "",
) -> tuple[T, ...]:
    """`value` as a tuple after checking each item with `item(f"{name}[i]", v)`.

    Refuses strings and bytes (a string is a sequence of characters, so "15" would pass as
    ('1', '5')), scalars, mappings and sets (no stable order); `min_length` defaults to 1, i.e.
    no empty lists. `example` is shown in the message, e.g. "betas=[0.1, 1.0]".
    """
    how = f" such as {example}" if example else ""
    if isinstance(value, (str, bytes)):
        raise ValueError(
            f"{name} must be a list{how}, got the string {value!r} (a string would be read one character "
            f"at a time); write the values as a list"
        )
    if isinstance(value, (Mapping, set, frozenset)) or not isinstance(value, Sequence) and not _is_array(value):
        raise ValueError(f"{name} must be a list{how}, got {type(value).__name__} {value!r}")
    values = tuple(value.tolist() if _is_array(value) else value)
    if len(values) < min_length:
        raise ValueError(f"{name} needs at least {min_length} value(s), got {list(values)!r}{'; e.g. ' + example if example else ''}")
    if item is None:
        return values
    return tuple(item(f"{name}[{index}]", entry) for index, entry in enumerate(values))


def _is_array(value: Any) -> bool:
    return hasattr(value, "tolist") and hasattr(value, "shape") and len(getattr(value, "shape", ())) == 1


def check_fields(owner: str, given: Iterable[str], valid: Iterable[str]) -> None:
    """Refuse unknown field names, naming the closest valid one and listing all of them."""
    valid = list(valid)
    unknown = [name for name in given if name not in valid]
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, valid, n=1)
        hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise ValueError(f"unknown {owner} field(s) {', '.join(hints)}; valid fields: {', '.join(valid)}")


def named_fields(cls: type[T]) -> type[T]:
    """Class decorator for a config dataclass: a misspelt keyword names the valid fields.

    The generated `__init__` would raise `TypeError: unexpected keyword argument 'epoch'`; with
    this decorator the error is `ValueError: unknown TrainConfig field(s) 'epoch' (did you mean
    'epochs'?); valid fields: ...`. Apply it above `@dataclass`.
    """
    names = [field.name for field in dataclasses.fields(cls)]
    generated = cls.__init__

    @functools.wraps(generated)
    def __init__(self, *args, **kwargs):
        check_fields(cls.__name__, kwargs, names)
        generated(self, *args, **kwargs)

    cls.__init__ = __init__
    return cls


def dataclass_from_dict(cls: type[T], values: Mapping[str, Any]) -> T:
    """`cls(**values)` for a dataclass, refusing unknown keys with the list of valid fields."""
    check_fields(cls.__name__, values, [field.name for field in dataclasses.fields(cls)])
    return cls(**values)


def file_sha256(path: str | os.PathLike, *, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read in chunks (the one file-hash helper of the project)."""
    digest = hashlib.sha256()
    with open(Path(path), "rb") as stream:
        for block in iter(lambda: stream.read(chunk_bytes), b""):
            digest.update(block)
    return digest.hexdigest()
