"""Formatting and argument parsing of the `taas` command (no server needed)."""

from __future__ import annotations

import json

import click
import pytest
import yaml
from click.testing import CliRunner

from taas.cli.main import _parse_directions, cli
from taas.cli.output import cell, render_list, render_one, table

ITEMS = [
    {"id": "1", "name": "a", "directions": {"OUT": 103, "IN": 102}, "status": "DOWN"},
    {"id": "22", "name": "bb", "directions": {}, "status": None},
]


def test_cell_renders_dicts_lists_and_none() -> None:
    assert cell({"OUT": 103, "IN": 102}) == "IN=102, OUT=103"
    assert cell(["x", "y"]) == "x, y"
    assert cell(None) == ""
    assert cell(True) == "True"


def test_table_is_aligned() -> None:
    out = table(["id", "name"], [["1", "a"], ["22", "bbb"]]).splitlines()
    assert out[0] == "+----+------+"
    assert out[1] == "| id | name |"
    assert out[3] == "| 1  | a    |"
    assert out[4] == "| 22 | bbb  |"
    assert len({len(line) for line in out}) == 1


def test_render_list_default_and_selected_columns() -> None:
    out = render_list(ITEMS, ["id", "name"], "table", ())
    assert "directions" not in out and "| 22 | bb   |" in out
    # -c may pick a field outside the default columns, case-insensitively.
    assert render_list(ITEMS, ["id", "name"], "value", ("ID", "status")) == "1 DOWN\n22 "
    data = json.loads(render_list(ITEMS, ["id"], "json", ("name", "directions")))
    assert data == [{"name": "a", "directions": {"OUT": 103, "IN": 102}},
                    {"name": "bb", "directions": {}}]
    assert yaml.safe_load(render_list(ITEMS, ["id"], "yaml", ())) == [{"id": "1"}, {"id": "22"}]


def test_render_list_unknown_column_is_a_usage_error() -> None:
    with pytest.raises(click.UsageError, match="no column 'nope'"):
        render_list(ITEMS, ["id"], "table", ("nope",))


def test_render_one_formats() -> None:
    item = ITEMS[0]
    assert "| directions | IN=102, OUT=103 |" in render_one(item, "table", ())
    assert render_one(item, "value", ("name", "id")) == "a\n1"
    assert json.loads(render_one(item, "json", ())) == item


def test_parse_directions() -> None:
    assert _parse_directions(["in=102", "OUT = 103"]) == {"IN": 102, "OUT": 103}
    for bad in ("IN", "SIDEWAYS=1", "IN="):
        with pytest.raises(click.BadParameter):
            _parse_directions([bad])


def test_usage_errors_before_any_request() -> None:
    runner = CliRunner()
    # Port 9 (discard) is never contacted: these fail in argument parsing.
    base = ["--os-url", "http://127.0.0.1:9"]
    res = runner.invoke(cli, [*base, "tap", "flow", "create", "--port", "p", "--tap-service",
                              "s", "--direction", "SIDEWAYS"])
    assert res.exit_code == 2 and "SIDEWAYS" in res.output
    res = runner.invoke(cli, [*base, "tap", "mirror", "create", "--port", "p", "--directions",
                              "IN:1", "--remote-ip", "1.2.3.4", "--mirror-type", "gre"])
    assert res.exit_code == 2 and "expected IN=ID" in res.output
    res = runner.invoke(cli, [*base, "tap", "service", "update", "x"])
    assert res.exit_code == 2 and "nothing to update" in res.output


def test_lab_group_is_loaded_only_when_asked_for() -> None:
    import sys

    runner = CliRunner()
    sys.modules.pop("taas.lab.cli", None)
    res = runner.invoke(cli, ["tap", "service", "--help"])
    assert res.exit_code == 0 and "taas.lab.cli" not in sys.modules
    res = runner.invoke(cli, ["--help"])
    assert res.exit_code == 0 and "lab " in res.output
    res = runner.invoke(cli, ["lab", "--help"])
    assert res.exit_code == 0 and "taas.lab.cli" in sys.modules


def test_show_puts_each_counter_of_statistics_on_its_own_row() -> None:
    mirror = {"id": "m", "statistics": {"IN": {"sent_packets": 7, "sent_bytes": 700,
                                               "dropped_packets": 0},
                                        "updated_at": "2026-12-01T12:00:00Z"}}
    out = render_one(mirror, "table", ())
    assert "| statistics.IN.sent_packets    | 7 " in out
    assert "| statistics.updated_at         | 2026-12-01T12:00:00Z |" in out
    flow = {"id": "f", "statistics": {"mirrored_packets": 3, "filtered_packets": 1}}
    assert "| statistics.mirrored_packets | 3" in render_one(flow, "table", ())
    assert json.loads(render_one(flow, "json", ()))["statistics"]["mirrored_packets"] == 3
