"""Field types that keep hostile values out of the database.

PostgreSQL refuses a NUL character in ``text``/``varchar`` and the ``NaN``/``Infinity`` tokens
in ``json`` (SQLite takes both), so these are refused at the edge as 422 naming the field on
every backend, instead of a driver error (a 500) on one of them.
"""

import math
from typing import Annotated, Any

from pydantic import AfterValidator


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


def finite_json(value: Any) -> Any:
    """``value`` unchanged when every float inside it (nested dicts/lists) is finite.

    Raises:
        ValueError: a NaN or infinite float, or a key/string with a NUL character.
    """
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("NaN and infinite values are not JSON")
    if isinstance(value, str):
        _no_nul(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_nul(str(key))
            finite_json(item)
    elif isinstance(value, list | tuple):
        for item in value:
            finite_json(item)
    return value


SafeStr = Annotated[str, AfterValidator(_no_nul)]
"""A string without NUL characters."""

JsonDict = Annotated[dict[str, Any], AfterValidator(finite_json)]
"""A JSON object that PostgreSQL's ``json`` type accepts (finite numbers, no NUL)."""
