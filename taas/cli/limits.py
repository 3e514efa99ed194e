"""The options of the copies' limits (issue 10): --snaplen, --max-pps, --max-kbps.

On create a value sets the limit; on update a value changes it and ``none`` removes it (whole
frames / unlimited). Ranges are the server's to check (its 400 says what is wrong)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

# attribute -> (option, help)
LIMITS: dict[str, tuple[str, str]] = {
    "snaplen": ("--snaplen", "Bytes of each copy kept (64-65535)."),
    "max_pps": ("--max-pps", "Ceiling on the copies, packets per second."),
    "max_kbps": ("--max-kbps", "Ceiling on the copies, kbit per second."),
}
RATES = ("max_pps", "max_kbps")
ALL = tuple(LIMITS)
CLEAR = "none"


class _Limit(click.ParamType):
    name = "N"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int | str:
        if isinstance(value, int) or value == CLEAR:
            return value  # type: ignore[no-any-return]
        if isinstance(value, str) and value.lower() == CLEAR:
            return CLEAR
        try:
            return int(value)
        except ValueError:
            self.fail(f"{value!r} is not an integer (or '{CLEAR}')", param, ctx)


def limit_options(keys: tuple[str, ...], update: bool = False
                  ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Click options for the limits ``keys`` (their values reach the command as kwargs)."""
    def deco(f: Callable[..., Any]) -> Callable[..., Any]:
        for key in reversed(keys):
            opt, text = LIMITS[key]
            if update:
                text += f" '{CLEAR}': remove it."
            f = click.option(opt, key, type=_Limit(), default=None, help=text)(f)
        return f

    return deco


def limit_attrs(values: dict[str, Any]) -> dict[str, Any]:
    """The body attributes of the given options (``none`` -> null)."""
    return {k: (None if v == CLEAR else v) for k, v in values.items()
            if k in LIMITS and v is not None}
