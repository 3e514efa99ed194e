"""Rendering of resources: aligned ASCII tables, JSON, YAML and bare values."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click
import yaml

FORMATS = ("table", "json", "yaml", "value")


def cell(value: Any) -> str:
    """A value as one table cell: dicts as k=v pairs, lists comma-joined, None empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, dict):
        return ", ".join(f"{k}={cell(v)}" for k, v in sorted(value.items()))
    if isinstance(value, list | tuple):
        return ", ".join(cell(v) if not isinstance(v, dict) else json.dumps(v) for v in value)
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A simple boxed table in the style of OpenStack's client."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], max((len(line) for line in c.splitlines()), default=0))
    sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(values: Sequence[str]) -> str:
        return "|" + "|".join(f" {v:<{w}} " for v, w in zip(values, widths, strict=True)) + "|"

    out = [sep, line(headers), sep]
    out.extend(line(r) for r in rows)
    out.append(sep)
    return "\n".join(out)


def select_columns(available: Sequence[str], wanted: Sequence[str]) -> list[str]:
    """Resolve -c names (case-insensitive) against the available columns."""
    if not wanted:
        return list(available)
    by_lower = {c.lower(): c for c in available}
    chosen = []
    for w in wanted:
        col = by_lower.get(w.lower())
        if col is None:
            raise click.UsageError(
                f"no column {w!r}; choose from: {', '.join(available)}")
        chosen.append(col)
    return chosen


def render_list(items: Sequence[dict[str, Any]], default_columns: Sequence[str] | None,
                fmt: str, columns: Sequence[str]) -> str:
    """A list of resources; default columns unless -c asks for others (any field)."""
    available: list[str] = list(default_columns or [])
    for item in items:
        available.extend(k for k in item if k not in available)
    if columns:
        # -c may name any field the server returned, not only the default columns.
        cols = select_columns(available, columns) if items else list(columns)
    else:
        cols = list(default_columns) if default_columns else available
    if fmt == "json":
        return json.dumps([{c: i.get(c) for c in cols} for i in items], indent=2)
    if fmt == "yaml":
        return yaml.safe_dump([{c: i.get(c) for c in cols} for i in items],
                              sort_keys=False).rstrip()
    rows = [[cell(i.get(c)) for c in cols] for i in items]
    if fmt == "value":
        return "\n".join(" ".join(r) for r in rows)
    return table(cols, rows)


def flat_statistics(item: dict[str, Any]) -> dict[str, Any]:
    """`statistics` (nested per tap mirror direction) as one field per counter, e.g.
    ``statistics.mirrored_packets``, ``statistics.IN.sent_packets``: a row each in a table."""
    stats = item.get("statistics")
    if not isinstance(stats, dict):
        return item
    out = {k: v for k, v in item.items() if k != "statistics"}
    for key, value in stats.items():
        if isinstance(value, dict):
            out.update({f"statistics.{key}.{k}": v for k, v in value.items()})
        else:
            out[f"statistics.{key}"] = value
    return out


def render_one(item: dict[str, Any], fmt: str, columns: Sequence[str]) -> str:
    """One resource: a Field/Value table, or the selected fields."""
    if fmt in ("table", "value") and not columns:
        item = flat_statistics(item)
    cols = select_columns(sorted(item), columns)
    if fmt == "json":
        return json.dumps({c: item.get(c) for c in cols}, indent=2)
    if fmt == "yaml":
        return yaml.safe_dump({c: item.get(c) for c in cols}, sort_keys=False).rstrip()
    if fmt == "value":
        return "\n".join(cell(item.get(c)) for c in cols)
    return table(["Field", "Value"], [[c, cell(item.get(c))] for c in cols])
