"""Pieces of the Neutron integration that need no lab: notification parsing, the transport
URL, and the agent's hook table (copies made where the neighbour's pipeline already passed
anti-spoofing)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from taas.agent.ovs.compile import BridgeFacts, compile_host
from taas.agent.ovs.tables import BR_INT
from taas.agent.ports import LocalPort
from taas.common.desired_state import DesiredState, PortFacts, TapFlowState, TapServiceState
from taas.server.ports.neutron import kombu_url, parse_notification


def oslo(event: str, payload: dict) -> dict:
    return {"oslo.version": "2.0", "oslo.message": json.dumps(
        {"event_type": event, "payload": payload, "priority": "INFO"})}


def test_parse_notifications() -> None:
    assert parse_notification(oslo("port.delete.end", {"port_id": "p1"})) == [
        ("port", "p1", True)]
    assert parse_notification(oslo("port.update.end", {"port": {"id": "p2"}})) == [
        ("port", "p2", False)]
    assert parse_notification(oslo("port.create.end", {"ports": [{"id": "a"}, {"id": "b"}]})) \
        == [("port", "a", False), ("port", "b", False)]
    assert parse_notification(oslo("network.delete.end", {"network_id": "n"})) == [
        ("network", "n", True)]
    # start events, other resources: nothing to do
    assert parse_notification(oslo("port.update.start", {"port": {"id": "p"}})) == []
    assert parse_notification(oslo("subnet.create.end", {"subnet": {"id": "s"}})) == []


def test_transport_url_for_kombu() -> None:
    assert kombu_url("rabbit://u:p@10.0.0.1:5672/") == "amqp://u:p@10.0.0.1:5672/"
    assert kombu_url("amqp://u:p@h//") == "amqp://u:p@h//"


def test_hook_table_moves_the_hooks_only() -> None:
    """--hook-table 60: the per-port hooks (copies, then the continuation) sit in table 60;
    delivery to the monitor and the drop of other br-tap traffic stay in table 0."""
    src = LocalPort("src", 5, 1, "fa:16:3e:00:00:05", "tap-src")
    mon = LocalPort("mon", 6, 2, "fa:16:3e:00:00:06", "tap-mon")
    ds = DesiredState(
        "h1", 1, (TapServiceState("s", "p", "mon", 3900, 16_003_900, "h1", "10.0.0.1"),),
        (TapFlowState("f", "p", "s", "src", "BOTH", None),), (),
        {"src": PortFacts("src", "n1", src.mac, 100, "h1"),
         "mon": PortFacts("mon", "n2", mon.mac, 101, "h1")})
    facts = BridgeFacts(int_patch_tap=1, tap_patch_int=1, tap_patch_tun=2, tun_patch_tap=1,
                        int_patch_tun=2, vxlan_ports={}, mirror_ports={})
    flows = compile_host(ds, {"src": src, "mon": mon}, facts, "h1", hook_table=60).flows[BR_INT]
    hooks = [f for f in flows if f.table == 60]
    in_ports = {t for f in hooks for t in f.match if t.startswith("in_port=")}
    assert in_ports == {"in_port=5", "in_port=2"}  # the source, patch-tun
    assert all(f.actions.endswith(",NORMAL") for f in hooks)
    assert {f.priority for f in flows if f.table == 0} == {320, 310}  # deliver, drop


def test_plugin_forwards_the_callers_identity() -> None:
    """The service plugin, in neutron-server's own Python (Debian's): a Keystone caller's token
    is forwarded as is; a noauth caller's project and roles go as X-Project-Id/X-Roles, with
    [taas_server] token as the credential (the Neutron lab covers only the Keystone path)."""
    code = """
import json, types
from oslo_config import cfg
from taas.neutron_plugin.plugin import TaasProxyPlugin as P
ks = types.SimpleNamespace(auth_token="tok", project_id="p1", roles=["member"], is_admin=False)
noauth = types.SimpleNamespace(auth_token=None, project_id="p2", roles=[], is_admin=True)
out = [P._headers(None, ks)]
cfg.CONF([], project="neutron", default_config_files=[])
cfg.CONF.set_override("token", "static", "taas_server")
out.append(P._headers(None, noauth))
print(json.dumps(out))
"""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cp = subprocess.run(["/usr/bin/python3", "-c", code], capture_output=True, text=True,
                        env=env, timeout=120)
    assert cp.returncode == 0, cp.stderr
    keystone, noauth = json.loads(cp.stdout)
    assert keystone == {"Accept": "application/json", "X-Auth-Token": "tok",
                        "X-Project-Id": "p1", "X-Roles": "member"}
    assert noauth == {"Accept": "application/json", "X-Auth-Token": "static",
                      "X-Project-Id": "p2", "X-Roles": "admin"}
