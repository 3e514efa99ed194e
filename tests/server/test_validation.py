"""Pure parts: attribute validation, vlan_filter, status aggregation, settings."""

from __future__ import annotations

import pytest

from taas.common.vlans import parse_vlan_filter
from taas.server.config import ConfigError, build_settings
from taas.server.services import validation as v
from taas.server.services.errors import InvalidInput
from taas.server.services.lifecycle import aggregate_status
from taas.server.services.tap import free_taas_ids


@pytest.mark.parametrize("value,ranges", [
    ("10", [(10, 10)]), ("0-4094", [(0, 4094)]), ("10-20,30", [(10, 20), (30, 30)]),
    ("5-5,7-9,100", [(5, 5), (7, 9), (100, 100)]),
])
def test_valid_vlan_filters(value: str, ranges: list[tuple[int, int]]) -> None:
    assert v.vlan_filter("vlan_filter", value) == value
    assert parse_vlan_filter(value) == ranges


@pytest.mark.parametrize("value", ["10-5", "4095", "1-4095", "a", "1,,2", "1-2-3", "", "-1",
                                   "1 ", "1\n", 5, [1], {"a": 1}])
def test_invalid_vlan_filters(value: object) -> None:
    with pytest.raises(InvalidInput):
        v.vlan_filter("vlan_filter", value)


def test_vlan_filter_null_means_everything() -> None:
    assert v.vlan_filter("vlan_filter", None) is None


def test_directions() -> None:
    assert v.directions("d", {"IN": "5", "OUT": 6}) == {"IN": 5, "OUT": 6}
    assert v.directions("d", {"BOTH": 2**32 - 1}) == {"BOTH": 2**32 - 1}
    for bad in ({}, {"in": 1}, {"IN": -1}, {"IN": 2**32}, {"IN": None}, {"IN": True},
                {"IN": 1, "OUT": 1}, [], "IN=1"):
        with pytest.raises(InvalidInput):
            v.directions("d", bad)


def test_ip_uuid_mac() -> None:
    assert v.ip_address("ip", "2001:DB8::1") == "2001:db8::1"
    with pytest.raises(InvalidInput):
        v.ip_address("ip", "10.0.0.256")
    u = "0B7F5A2E-1111-4222-8333-444455556666"
    assert v.uuid_str("id", u) == u.lower()
    for bad in ("x", "0b7f5a2e11114222833344445555666", 3):
        with pytest.raises(InvalidInput):
            v.uuid_str("id", bad)
    assert v.mac_address("m", "FA:16:3E:00:00:0A") == "fa:16:3e:00:00:0a"
    with pytest.raises(InvalidInput):
        v.mac_address("m", "fa:16:3e:00:00")


def test_check_body_defaults_required_and_unknown() -> None:
    port = "0b7f5a2e-1111-4222-8333-444455556666"
    out = v.check_body(v.TAP_SERVICE, {"port_id": port}, resource="tap_service")
    assert out["name"] == "" and out["description"] == "" and out["port_id"] == port
    with pytest.raises(InvalidInput, match="port_id"):
        v.check_body(v.TAP_SERVICE, {}, resource="tap_service")
    with pytest.raises(InvalidInput, match="bogus"):
        v.check_body(v.TAP_SERVICE, {"port_id": port, "bogus": 1}, resource="tap_service")
    with pytest.raises(InvalidInput, match="read-only"):
        v.check_body(v.TAP_SERVICE, {"port_id": port}, update=True, resource="tap_service")
    assert v.check_body(v.TAP_FLOW, {"name": "x"}, update=True) == {"name": "x"}
    assert v.check_body(v.TAP_FLOW, {}, update=True) == {}  # Neutron's no-op update
    with pytest.raises(InvalidInput):
        v.check_body(v.TAP_FLOW, [], update=True)


@pytest.mark.parametrize("hosts,reported,expected", [
    (["h1"], {"h1": "ACTIVE"}, "ACTIVE"),
    (["h1"], {}, "DOWN"),
    ([None], {"h1": "ACTIVE"}, "DOWN"),
    (["h1", "h2"], {"h1": "ACTIVE"}, "DOWN"),
    (["h1", "h2"], {"h1": "ACTIVE", "h2": "ACTIVE"}, "ACTIVE"),
    (["h1", "h1"], {"h1": "ACTIVE"}, "ACTIVE"),
    (["h1", "h2"], {"h1": "ACTIVE", "h2": "ERROR"}, "ERROR"),
    # Reports of hosts no longer involved do not count.
    (["h1", None], {"h3": "ERROR"}, "DOWN"),
    (["h1"], {"h1": "ACTIVE", "h3": "ERROR"}, "ACTIVE"),
])
def test_aggregate_status(hosts: list, reported: dict, expected: str) -> None:
    assert aggregate_status(hosts, reported) == expected


def test_settings_defaults_and_validation() -> None:
    s = build_settings({}, {})
    assert (s.vlan_range_start, s.vlan_range_end, s.tunnel_key_base, s.agent_down_time) == (
        3900, 4000, 16_000_000, 30)
    assert s.taas_vni_range == range(16_003_900, 16_004_000)
    assert build_settings({"vlan_range_start": "10"}, {"vlan_range_end": 20}).vlan_range_end == 20
    assert build_settings({"vlan_range_start": 1, "vlan_range_end": 4000}, {}).vlan_range_start == 1
    assert build_settings({"port": 1}, {"port": 2}).port == 2  # command line wins
    for bad in ({"vlan_range_start": 0}, {"vlan_range_start": 4000, "vlan_range_end": 4000},
                {"vlan_range_end": 4096}, {"vlan_range_end": 4001},
                {"vlan_range_start": 4000, "vlan_range_end": 4094},
                {"vlan_range_start": "x"}, {"nope": 1},
                {"agent_down_time": 0}):
        with pytest.raises(ConfigError):
            build_settings(bad, {})


def test_free_taas_ids_lowest_first_skipping_used() -> None:
    assert list(free_taas_ids(3900, 3905, {3900, 3902})) == [3901, 3903, 3904]
    assert list(free_taas_ids(3900, 3902, {3900, 3901})) == []
    assert next(free_taas_ids(1, 4095, set())) == 1
