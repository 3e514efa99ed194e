"""The protocol's pure parts: the tolerant contract, the placement rule, per-host wake-ups,
the long-poll's stop on disconnect."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace as NS

import pytest

from taas.common import placement
from taas.common.desired_state import (
    CONTRACT_VERSION,
    ContractError,
    DesiredState,
    HostReport,
    ResourceStatus,
)
from taas.server.drivers.notifier import RevisionNotifier, parse_payload
from taas.server.services.watch import wait_for_change

STATE = {
    "host": "h1", "revision": 7,
    "tap_services": [{"id": "s1", "project_id": "p", "port_id": "d", "taas_id": 3901,
                      "vni": 16003901, "dest_host": "h1", "dest_tunnel_ip": "10.0.0.1"}],
    "tap_flows": [{"id": "f1", "project_id": "p", "tap_service_id": "s1", "source_port": "s",
                   "direction": "BOTH", "vlan_filter": None}],
    "tap_mirrors": [{"id": "m1", "project_id": "p", "port_id": "s", "directions": {"IN": 5},
                     "remote_ip": "192.0.2.1", "mirror_type": "gre"}],
    "ports": {"d": {"port_id": "d", "network_id": "n", "mac": "fa:16:3e:00:00:01",
                    "segmentation_id": 100, "host": "h1"}},
}


def test_contract_ignores_unknown_fields_at_every_level() -> None:
    plain = DesiredState.from_dict(STATE)
    newer = {**STATE, "version": CONTRACT_VERSION + 1, "new_top": [1],
             "tap_services": [{**STATE["tap_services"][0], "qos": "gold"}],
             "tap_flows": [{**STATE["tap_flows"][0], "sampling": 0.5}],
             "tap_mirrors": [{**STATE["tap_mirrors"][0], "ttl": 3}],
             "ports": {"d": {**STATE["ports"]["d"], "mtu": 1450}}}
    assert DesiredState.from_dict(newer).tap_flows == plain.tap_flows
    assert DesiredState.from_dict(newer).ports == plain.ports
    # Round trip, with the version on the wire; the unversioned contract reads as version 1.
    assert plain.to_dict()["version"] == CONTRACT_VERSION
    assert DesiredState.from_dict(plain.to_dict()) == plain


@pytest.mark.parametrize("broken", [
    {"revision": 1},  # no host
    {**STATE, "tap_flows": [{**STATE["tap_flows"][0], "direction": "SIDEWAYS"}]},
    {**STATE, "revision": -1},
])
def test_contract_refuses_what_it_cannot_mean(broken: dict) -> None:
    with pytest.raises(ContractError):
        DesiredState.from_dict(broken)


def test_report_digest_is_order_insensitive_and_content_sensitive() -> None:
    a, b = ResourceStatus("tap_flow", "f1", "ACTIVE"), ResourceStatus("tap_service", "s1",
                                                                       "ERROR", "why")
    one, other = HostReport("h", 3, (a, b), (1, 2)), HostReport("h", 3, (b, a), (2, 1))
    assert one.digest() == other.digest()
    assert HostReport("h", 3, (a,), ()).digest() != HostReport("h", 4, (a,), ()).digest()
    with pytest.raises(ContractError):
        HostReport.from_dict({"host": "h", "revision": 1, "taas_ids": [5000]})


def test_placement_is_the_projection_rule() -> None:
    where = {"d": "h1", "s": "h2", "m": "h3"}
    svc = NS(id="s1", port_id="d")
    flow = NS(id="f1", tap_service_id="s1", source_port="s")
    mirror = NS(id="m1", port_id="m")
    host_of = where.get
    assert placement.service_hosts(svc, [flow], host_of) == {"h1", "h2"}
    assert placement.flow_hosts(flow, "d", host_of) == {"h1", "h2"}
    assert placement.mirror_hosts(mirror, host_of) == {"h3"}
    for host, expect in {"h1": (["s1"], ["f1"], []), "h2": (["s1"], ["f1"], []),
                         "h3": ([], [], ["m1"]), "h4": ([], [], [])}.items():
        share = placement.host_share(host, [svc], [flow], [mirror], host_of)
        assert tuple([r.id for r in part] for part in share) == expect


def test_notifier_wakes_only_the_named_hosts() -> None:
    async def run() -> None:
        notifier = RevisionNotifier()
        notifier.bind(asyncio.get_running_loop())
        a, b = notifier.current("a"), notifier.current("b")
        notifier.wake(["a"])
        await asyncio.wait_for(a.wait(), 5)
        assert not b.is_set() and notifier.wakeups == 1
        assert notifier.current("a") is not a  # a fresh event for the next change
        notifier.wake()  # every host (LISTEN reconnect, shutdown)
        await asyncio.wait_for(b.wait(), 5)

    asyncio.run(run())
    assert parse_payload('["h1", "h2"]') == ["h1", "h2"]
    assert parse_payload("*") is None and parse_payload("17") is None


def test_long_poll_stops_when_its_client_goes() -> None:
    reads = []

    async def run() -> bool:
        notifier = RevisionNotifier()
        notifier.bind(asyncio.get_running_loop())

        async def read() -> int:
            reads.append(1)
            return 5

        async def gone() -> None:
            return None  # the client has already closed its connection

        # A 60 s wait, and no change: only the disconnect can end it.
        return await wait_for_change(notifier, "h", 5, 60.0, 60.0, read, gone)

    assert asyncio.run(run()) is False and reads == [1]
