"""Option: one engine option's type, default, bounds and help, and its one validation.

A leaf module (no torch, no engine import), so that both the registry (engine/variants.py)
and an engine's own configuration (engine/nano/config.py) can build on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Option:
    type: type
    default: Any
    choices: tuple = ()
    help: str = ""
    minimum: int | None = None  # the least value a number may take
    validate: Callable[[str, Any], None] | None = None  # raises ValueError for a bad value

    def coerce(self, name: str, value: Any) -> Any:
        if value is None and self.default is None:  # an option whose default is "unset"
            return None
        is_bool = isinstance(value, bool)
        ok = isinstance(value, self.type) and (self.type is bool or not is_bool)
        if self.type is float and isinstance(value, int) and not is_bool:
            value, ok = float(value), True
        if not ok:
            raise ValueError(f"option {name!r} must be {self.type.__name__}, got {value!r}")
        if self.choices and value not in self.choices:
            raise ValueError(f"option {name!r} must be one of {list(self.choices)}, got {value!r}")
        if self.minimum is not None and value is not None and value < self.minimum:
            raise ValueError(f"option {name!r} must be >= {self.minimum}, got {value!r}")
        if self.validate:
            self.validate(name, value)
        return value
