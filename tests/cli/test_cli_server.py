"""The real `taas` command against a real taas-server (SQLite)."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest

PROJECT = "project-a"


@pytest.fixture(scope="module")
def inventory(taas: Any) -> dict[str, Any]:
    """A network of project-a with five ports, made with the CLI by the admin."""
    net = taas.json("network", "create", "cli-net", "--segmentation-id", "1201",
                    "--project", PROJECT)
    ports = {}
    for i, name in enumerate(["cli-mon", "cli-vm1", "cli-vm2", "cli-vm3", "cli-mon2"]):
        ports[name] = taas.json("port", "create", name, "--network", "cli-net",
                                "--mac-address", f"fa:16:3e:00:12:{i:02x}", "--project", PROJECT)
    return {"net": net, "ports": ports}


def test_network_and_port_commands(taas: Any, inventory: dict[str, Any]) -> None:
    net = inventory["net"]
    assert net["name"] == "cli-net" and net["project_id"] == PROJECT
    assert net["provider:segmentation_id"] == 1201
    assert taas.json("network", "show", "cli-net")["id"] == net["id"]
    assert [n["id"] for n in taas.json("network", "list", "--name", "cli-net")] == [net["id"]]

    vm1 = inventory["ports"]["cli-vm1"]
    assert vm1["network_id"] == net["id"] and vm1["mac_address"] == "fa:16:3e:00:12:01"
    listed = taas.json("port", "list", "--network", "cli-net")
    assert {p["name"] for p in listed} == set(inventory["ports"])
    assert taas.run("port", "show", "cli-vm1", "-f", "value", "-c", "id").out.strip() == vm1["id"]
    # The member of the owning project sees the port; the other project does not.
    assert taas.json("port", "show", vm1["id"], as_="a-member")["id"] == vm1["id"]
    assert taas.run("port", "show", vm1["id"], as_="b-member", check=False).code != 0

    # A network and a port with chosen ids, a bound host, deleted by name.
    tmp = taas.json("network", "create", "cli-tmp", "--segmentation-id", "1299",
                    "--id", "0b7c6c9e-1111-4a4a-9b9b-000000000001")
    assert tmp["id"] == "0b7c6c9e-1111-4a4a-9b9b-000000000001"
    port = taas.json("port", "create", "cli-tmp-p", "--network", tmp["id"], "--host", "hv9",
                     "--id", "0b7c6c9e-1111-4a4a-9b9b-000000000002")
    assert port["id"] == "0b7c6c9e-1111-4a4a-9b9b-000000000002"
    assert port["binding:host_id"] == "hv9"
    table = taas.run("port", "list", "--network", "cli-tmp").out
    assert "cli-tmp-p" in table and "hv9" in table and table.startswith("+")
    taas.run("port", "delete", "cli-tmp-p")
    taas.run("network", "delete", "cli-tmp")
    assert taas.json("network", "list", "--name", "cli-tmp") == []
    assert taas.run("network", "show", "cli-tmp", check=False).code != 0


def test_tap_service_lifecycle(taas: Any, inventory: dict[str, Any]) -> None:
    mon = inventory["ports"]["cli-mon"]
    ts = taas.json("tap", "service", "create", "--port", "cli-mon", "--name", "cli-ids",
                   "--description", "the IDS", as_="a-member")
    assert ts["port_id"] == mon["id"] and ts["project_id"] == PROJECT
    assert ts["name"] == "cli-ids" and ts["description"] == "the IDS" and ts["status"] == "DOWN"

    listed = taas.json("tap", "service", "list", as_="a-member")
    assert [s["id"] for s in listed] == [ts["id"]]
    assert set(listed[0]) == {"id", "project_id", "name", "port_id", "max_pps", "max_kbps",
                              "status"}
    table = taas.run("tap", "service", "list", as_="a-member").out
    assert ts["id"] in table and "cli-ids" in table
    assert taas.json("tap", "service", "list", as_="b-member") == []

    shown = taas.json("tap", "service", "show", "cli-ids", as_="a-member")
    assert shown["id"] == ts["id"] and shown["description"] == "the IDS"
    value = taas.run("tap", "service", "show", "cli-ids", "-f", "value", "-c", "name",
                     "-c", "port_id", as_="a-member").out
    assert value.split() == ["cli-ids", mon["id"]]

    upd = taas.json("tap", "service", "update", "cli-ids", "--name", "cli-ids2",
                    "--description", "renamed", as_="a-member")
    assert (upd["name"], upd["description"]) == ("cli-ids2", "renamed")
    assert taas.json("tap", "service", "show", ts["id"])["name"] == "cli-ids2"

    taas.run("tap", "service", "delete", "cli-ids2", as_="a-member")
    assert taas.json("tap", "service", "list", as_="a-member") == []


def test_tap_flow_lifecycle(taas: Any, inventory: dict[str, Any]) -> None:
    ports = inventory["ports"]
    ts = taas.json("tap", "service", "create", "--port", "cli-mon", "--name", "cli-flows-ts",
                   as_="a-member")
    f1 = taas.json("tap", "flow", "create", "--port", "cli-vm1", "--tap-service", "cli-flows-ts",
                   "--direction", "both", "--vlan-filter", "10-20,30", "--name", "cli-f1",
                   as_="a-member")
    assert f1["source_port"] == ports["cli-vm1"]["id"] and f1["tap_service_id"] == ts["id"]
    assert f1["direction"] == "BOTH" and f1["vlan_filter"] == "10-20,30"
    f2 = taas.json("tap", "flow", "create", "--port", ports["cli-vm2"]["id"], "--tap-service",
                   ts["id"], "--direction", "IN", "--name", "cli-f2", as_="a-member")
    assert f2["direction"] == "IN" and f2["vlan_filter"] is None

    by_service = taas.json("tap", "flow", "list", "--tap-service", "cli-flows-ts",
                           as_="a-member")
    assert {f["id"] for f in by_service} == {f1["id"], f2["id"]}
    by_port = taas.json("tap", "flow", "list", "--port", "cli-vm2", as_="a-member")
    assert [f["id"] for f in by_port] == [f2["id"]]
    ids = taas.run("tap", "flow", "list", "-f", "value", "-c", "id", as_="a-member").out
    assert sorted(ids.split()) == sorted([f1["id"], f2["id"]])

    assert taas.json("tap", "flow", "show", "cli-f1", as_="a-member")["id"] == f1["id"]
    upd = taas.json("tap", "flow", "update", "cli-f1", "--description", "web tier",
                    as_="a-member")
    assert upd["description"] == "web tier" and upd["name"] == "cli-f1"

    taas.run("tap", "flow", "delete", "cli-f1", as_="a-member")
    assert [f["id"] for f in taas.json("tap", "flow", "list", as_="a-member")] == [f2["id"]]
    # Deleting the service takes its remaining flow with it.
    taas.run("tap", "service", "delete", ts["id"], as_="a-member")
    assert taas.json("tap", "flow", "list", as_="a-member") == []


def test_tap_filter_lifecycle_and_flow_filter(taas: Any, inventory: dict[str, Any]) -> None:
    flt = taas.json("tap", "filter", "create", "--name", "cli-web", "--rule",
                    "action=mirror,protocol=tcp,destination_port_range=80,priority=10",
                    "--rule", "priority=5,action=skip,protocol=17", as_="a-member")
    assert flt["default_action"] == "skip"
    assert [(r["priority"], r["action"], r["protocol"], r["destination_port_range"])
            for r in flt["rules"]] == [(5, "skip", "17", None), (10, "mirror", "tcp", "80")]
    ts = taas.json("tap", "service", "create", "--port", "cli-mon2", "--name", "cli-filt-ts",
                   as_="a-member")
    f = taas.json("tap", "flow", "create", "--port", "cli-vm3", "--tap-service", ts["id"],
                  "--direction", "OUT", "--filter", "cli-web", as_="a-member")
    assert f["tap_filter_id"] == flt["id"]
    off = taas.json("tap", "flow", "update", f["id"], "--no-filter", as_="a-member")
    assert off["tap_filter_id"] is None
    on = taas.json("tap", "flow", "update", f["id"], "--filter", "cli-web", as_="a-member")
    assert on["tap_filter_id"] == flt["id"]
    assert [x["id"] for x in taas.json("tap", "filter", "list", as_="a-member")] == [flt["id"]]
    upd = taas.json("tap", "filter", "update", "cli-web", "--no-rules", "--default-action",
                    "mirror", as_="a-member")
    assert (upd["rules"], upd["default_action"]) == ([], "mirror")
    assert taas.json("tap", "filter", "show", "cli-web", as_="a-member")["rules"] == []
    res = taas.run("tap", "filter", "create", "--rule", "priority=1,action=mirror,"
                   "protocol=icmp,destination_port_range=80", as_="a-member", check=False)
    assert res.code == 1 and "port ranges need protocol tcp or udp" in res.err
    res = taas.run("tap", "filter", "delete", "cli-web", as_="a-member", check=False)
    assert res.code == 1 and "is used by tap flow" in res.err
    taas.run("tap", "service", "delete", ts["id"], as_="a-member")
    taas.run("tap", "filter", "delete", "cli-web", as_="a-member")
    assert taas.json("tap", "filter", "list", as_="a-member") == []


def test_tap_mirror_lifecycle(taas: Any, inventory: dict[str, Any]) -> None:
    vm3 = inventory["ports"]["cli-vm3"]
    tm = taas.json("tap", "mirror", "create", "--port", "cli-vm3", "--directions", "IN=102",
                   "--directions", "OUT=103", "--remote-ip", "192.0.2.10", "--mirror-type",
                   "gre", "--name", "cli-tm", as_="a-member")
    assert tm["port_id"] == vm3["id"] and tm["remote_ip"] == "192.0.2.10"
    assert {k: int(v) for k, v in tm["directions"].items()} == {"IN": 102, "OUT": 103}
    assert tm["mirror_type"] == "gre"
    table = taas.run("tap", "mirror", "show", "cli-tm", as_="a-member").out
    assert "IN=102, OUT=103" in table
    assert [m["id"] for m in taas.json("tap", "mirror", "list", "--port", "cli-vm3",
                                       as_="a-member")] == [tm["id"]]
    upd = taas.json("tap", "mirror", "update", "cli-tm", "--name", "cli-tm2", as_="a-member")
    assert upd["name"] == "cli-tm2"

    # The same tunnel id again: the server's 409, shown as one line.
    res = taas.run("tap", "mirror", "create", "--port", "cli-vm2", "--directions", "IN=102",
                   "--remote-ip", "192.0.2.11", "--mirror-type", "erspanv1", as_="a-member",
                   check=False)
    assert res.code == 1 and res.out == ""
    assert res.err.count("\n") == 1
    assert res.err.startswith("Error: ") and "(HTTP 409 TapMirrorTunnelConflict)" in res.err

    taas.run("tap", "mirror", "delete", "cli-tm2", as_="a-member")
    assert taas.json("tap", "mirror", "list", as_="a-member") == []


def test_snaplen_and_rate_limit_options(taas: Any, inventory: dict[str, Any]) -> None:
    mon = taas.json("port", "create", "cli-lim-mon", "--network", "cli-net", "--mac-address",
                    "fa:16:3e:00:12:20", "--project", PROJECT)
    ts = taas.json("tap", "service", "create", "--port", mon["id"], "--max-pps", "5000",
                   as_="a-member")
    assert (ts["max_pps"], ts["max_kbps"]) == (5000, None)
    f = taas.json("tap", "flow", "create", "--port", "cli-vm1", "--tap-service", ts["id"],
                  "--direction", "OUT", "--snaplen", "128", "--max-pps", "1000",
                  "--max-kbps", "800", as_="a-member")
    assert (f["snaplen"], f["max_pps"], f["max_kbps"]) == (128, 1000, 800)
    # shown by list (a column each) and show
    row = taas.run("tap", "flow", "list", "-f", "value", "-c", "snaplen", "-c", "max_pps",
                   as_="a-member").out.split()
    assert row == ["128", "1000"]
    assert "max_kbps" in taas.run("tap", "flow", "show", f["id"], as_="a-member").out
    upd = taas.json("tap", "flow", "update", f["id"], "--snaplen", "none", "--max-pps", "10",
                    as_="a-member")
    assert (upd["snaplen"], upd["max_pps"], upd["max_kbps"]) == (None, 10, 800)
    upd = taas.json("tap", "service", "update", ts["id"], "--max-kbps", "64", as_="a-member")
    assert (upd["max_pps"], upd["max_kbps"]) == (5000, 64)
    tm = taas.json("tap", "mirror", "create", "--port", "cli-vm2", "--directions", "IN=190",
                   "--remote-ip", "192.0.2.10", "--mirror-type", "gre", "--snaplen", "96",
                   as_="a-member")
    upd = taas.json("tap", "mirror", "update", tm["id"], "--max-pps", "50", as_="a-member")
    assert (upd["snaplen"], upd["max_pps"]) == (96, 50)
    # The server's 400 (what is wrong), as one line; a non-number is refused by the CLI.
    res = taas.run("tap", "flow", "update", f["id"], "--snaplen", "10", as_="a-member",
                   check=False)
    assert "'snaplen' must be 64-65535 bytes" in _one_line_error(res)
    res = taas.run("tap", "flow", "update", f["id"], "--max-pps", "x", as_="a-member",
                   check=False)
    assert res.code == 2 and "not an integer" in res.err
    taas.run("tap", "mirror", "delete", tm["id"], as_="a-member")
    taas.run("tap", "service", "delete", ts["id"], as_="a-member")
    taas.run("port", "delete", mon["id"])


def _one_line_error(res: Any) -> str:
    assert res.code != 0 and res.out == ""
    assert res.err.startswith("Error: ") and res.err.count("\n") == 1, res.err
    return str(res.err)


def test_errors_are_one_line(taas: Any, inventory: dict[str, Any], server: Any) -> None:
    # Unknown names and ids.
    err = _one_line_error(taas.run("tap", "service", "show", "nope", check=False))
    assert "no tap service with name or id 'nope'" in err
    err = _one_line_error(taas.run("tap", "flow", "create", "--port", "nope", "--tap-service",
                                   "x", "--direction", "IN", check=False))
    assert "no port with name or id 'nope'" in err
    # The server's own 404 for an id it does not know.
    err = _one_line_error(taas.run("tap", "service", "delete",
                                   "6f1d8b52-0000-4000-8000-000000000000", check=False))
    assert "6f1d8b52-0000-4000-8000-000000000000" in err
    # Validation by the server: a reversed VLAN range.
    taas.json("tap", "service", "create", "--port", "cli-mon2", "--name", "cli-err-ts",
              as_="a-member")
    err = _one_line_error(taas.run("tap", "flow", "create", "--port", "cli-vm1",
                                   "--tap-service", "cli-err-ts", "--direction", "IN",
                                   "--vlan-filter", "20-10", as_="a-member", check=False))
    assert "(HTTP 400" in err
    # Another project's tap service is invisible (404), not forbidden.
    err = _one_line_error(taas.run("tap", "service", "show", "cli-err-ts", as_="b-member",
                                   check=False))
    assert "cli-err-ts" in err
    # A reader may not create.
    err = _one_line_error(taas.run("tap", "service", "create", "--port", "cli-vm3",
                                   as_="a-reader", check=False))
    assert "(HTTP 403" in err or "(HTTP 404" in err
    taas.run("tap", "service", "delete", "cli-err-ts", as_="a-member")
    # Two networks with one name: an ambiguous reference.
    taas.json("network", "create", "cli-twin", "--segmentation-id", "1301")
    taas.json("network", "create", "cli-twin", "--segmentation-id", "1302")
    err = _one_line_error(taas.run("network", "show", "cli-twin", check=False))
    assert "more than one network is named 'cli-twin'" in err
    for n in taas.json("network", "list", "--name", "cli-twin"):
        taas.run("network", "delete", n["id"])
    # A bad token.
    err = _one_line_error(taas.run("tap", "service", "list", check=False,
                                   env={"TAAS_TOKEN": "not-a-token"}))
    assert "(HTTP 401" in err


def test_connection_refused_is_one_line(taas: Any) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    res = taas.run("tap", "service", "list", check=False, env={"TAAS_URL": dead})
    err = _one_line_error(res)
    assert f"cannot connect to {dead}" in err and "refused" in err.lower()


def test_env_vars_and_options(taas: Any, inventory: dict[str, Any]) -> None:
    net_id = inventory["net"]["id"]
    # Options win over the environment.
    res = taas.run("--os-url", taas.url, "--os-token", taas.tokens["admin"], "network", "show",
                   net_id, "-f", "value", "-c", "id",
                   env={"TAAS_URL": "http://127.0.0.1:9", "TAAS_TOKEN": "bogus"})
    assert res.out.strip() == net_id
    # The environment alone is enough (the runner sets TAAS_URL / TAAS_TOKEN).
    assert taas.run("network", "show", net_id, "-f", "value", "-c", "name").out.strip() == "cli-net"
    # The token decides who you are: project-b does not see project-a's network.
    assert taas.run("network", "show", net_id, as_="b-member", check=False).code != 0


def test_agent_commands(taas: Any, server: Any) -> None:
    assert taas.json("agent", "list") == []
    # An agent registers through the agent API; the CLI then lists, shows and deletes it.
    r = httpx.put(f"{server.url}/v2.0/taas-agents/cli-hv1",
                  json={"agent": {"tunnel_ip": "172.31.9.1"}},
                  headers={"X-Auth-Token": server.tokens["service"]})
    assert r.status_code == 200, r.text
    agents = taas.json("agent", "list")
    assert [(a["host"], a["configurations"]["tunnel_ip"], a["alive"]) for a in agents] == [
        ("cli-hv1", "172.31.9.1", True)]
    table = taas.run("agent", "list").out
    assert "cli-hv1" in table and "tunnel_ip=172.31.9.1" in table
    assert taas.json("agent", "show", "cli-hv1")["id"] == agents[0]["id"]
    taas.run("agent", "delete", "cli-hv1")
    assert taas.json("agent", "list") == []


def test_tap_service_limit_is_reported(make_taas: Any) -> None:
    from taas.testing.server import run_server

    with run_server(vlan_range_start=3900, vlan_range_end=3901) as srv:
        taas = make_taas(srv.url, srv.tokens)
        taas.json("network", "create", "lim-net", "--segmentation-id", "1401")
        taas.json("port", "create", "lim-p1", "--network", "lim-net")
        taas.json("port", "create", "lim-p2", "--network", "lim-net")
        taas.json("tap", "service", "create", "--port", "lim-p1")
        res = taas.run("tap", "service", "create", "--port", "lim-p2", check=False)
        err = _one_line_error(res)
        assert "(HTTP 409 TapServiceLimitReached)" in err


def test_show_prints_statistics(taas: Any, inventory: dict[str, Any], server: Any) -> None:
    """Counters an agent reported, in `show` of a tap flow, service and mirror."""
    ts = taas.json("tap", "service", "create", "--port", "cli-mon2", as_="a-member")
    tf = taas.json("tap", "flow", "create", "--port", "cli-vm3", "--tap-service", ts["id"],
                   "--direction", "OUT", "--name", "cli-counted", as_="a-member")
    tm = taas.json("tap", "mirror", "create", "--port", "cli-vm1", "--directions", "IN=141",
                   "--remote-ip", "192.0.2.10", "--mirror-type", "gre", "--name", "cli-tm-c",
                   as_="a-member")
    agent = httpx.Client(base_url=server.url, headers={"X-Auth-Token": server.tokens["service"]})
    try:
        assert agent.put("/v2.0/taas-agents/cli-hv", json={"agent": {
            "tunnel_ip": "172.31.44.1"}}).status_code == 200
        slots = [{"kind": "tap_flow", "id": tf["id"], "counter": "mirrored", "slot": "a",
                  "epoch": 1, "packets": 7, "bytes": 700},
                 {"kind": "tap_service", "id": ts["id"], "counter": "delivered", "slot": "b",
                  "epoch": 1, "packets": 7, "bytes": 700},
                 {"kind": "tap_mirror", "id": tm["id"], "counter": "sent", "slot": "c",
                  "epoch": 1, "packets": 5, "bytes": 500, "direction": "IN"}]
        r = agent.put("/v2.0/taas-agents/cli-hv/counters", json={"counters": {
            "boot": "b1", "seq": 1, "counters": slots}})
        assert r.status_code == 200 and r.json()["counters"]["accepted"] == 3, r.text
    finally:
        agent.close()
    flow = taas.run("tap", "flow", "show", "cli-counted", as_="a-member").out
    assert "| statistics.mirrored_packets " in flow and "| 7 " in flow
    assert "| statistics.mirrored_bytes " in flow and "| 700 " in flow
    service = taas.run("tap", "service", "show", ts["id"], as_="a-member").out
    assert "| statistics.delivered_packets " in service
    mirror = taas.run("tap", "mirror", "show", "cli-tm-c", as_="a-member").out
    assert "| statistics.IN.sent_packets " in mirror and "| 5 " in mirror
    assert taas.json("tap", "flow", "show", "cli-counted", as_="a-member")["statistics"][
        "mirrored_packets"] == 7
    taas.run("tap", "mirror", "delete", "cli-tm-c", as_="a-member")
    taas.run("tap", "service", "delete", ts["id"], as_="a-member")
