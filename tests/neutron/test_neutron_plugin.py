"""Issue 9 on the Neutron lab, a real cloud: Keystone's catalog names neutron-server as the
`network` service, and neutron-server's own /v2.0/taas/... reaches taas-server through the
service plugin (taas/neutron_plugin) with the caller's Keystone token, which taas-server
validates itself. openstacksdk, the `openstack tap` CLI and upstream's own TaaS suites
(openstacksdk's functional tests, neutron-tempest-plugin's API tests, unchanged) go through
neutron-server; isolation and errors are taas-server's; a clear 503 when taas-server is gone.

Runs on the package's lab after test_neutron_mirroring.py."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openstack
import pytest
from openstack.config import OpenStackConfig

from taas.testing.upstream import (
    SDK_TESTS,
    TEMPEST_TESTS,
    SuiteRun,
    all_passed,
    clean_env,
    run_sdk_suite,
    start_tempest_suite,
)
from taas.testing.wait import wait_until

from .conftest import NeutronSystem
from .test_neutron_mirroring import frame, probes

pytestmark = pytest.mark.ovs


@pytest.fixture(scope="module")
def member_b(nsys: NeutronSystem) -> dict[str, str]:
    """Headers of a member of project-b (a project with nothing in it), a Keystone token."""
    if "b-member" not in nsys.ks.users:
        nsys.ks.add_user("b-member", "project-b", ["member"])
    return {"X-Auth-Token": nsys.ks.token("b-member")}


@pytest.fixture(scope="module")
def sdk(nsys: NeutronSystem) -> Iterator[Any]:
    """openstacksdk as project-a's member, from the lab's clouds.yaml: Keystone login, the
    catalog's network endpoint (neutron-server)."""
    config = OpenStackConfig(config_files=[nsys.lab.state["keystone"]["clouds_yaml"]])
    conn = openstack.connection.Connection(config=config.get_one("project-a"))
    assert conn.network.get_endpoint().startswith(nsys.lab.state["neutron"]["url"] + "/")
    yield conn
    conn.close()


def osc(nsys: NeutronSystem, *args: str) -> Any:
    """The real `openstack` CLI as project-a's member (the lab's clouds.yaml); parsed JSON."""
    env = clean_env(OS_CLIENT_CONFIG_FILE=nsys.lab.state["keystone"]["clouds_yaml"])
    cp = subprocess.run(["openstack", "--os-cloud", "project-a", *args, "-f", "json"],
                        capture_output=True, text=True, timeout=120, env=env)
    assert cp.returncode == 0, cp.stderr
    return json.loads(cp.stdout) if cp.stdout.strip() else None


def test_extensions_registered_in_neutron(nsys: NeutronSystem) -> None:
    aliases = {e["alias"] for e in nsys.neutron.get("/v2.0/extensions").json()["extensions"]}
    assert {"taas", "taas-vlan-filter", "tap-mirror", "taas-tap-filter", "taas-limits"} <= \
        aliases


def same(via: dict[str, Any], direct: dict[str, Any]) -> None:
    """The same attributes and values, but for what the agents move meanwhile."""
    moving = ("status", "statistics")
    assert set(via) == set(direct)
    assert {k: v for k, v in via.items() if k not in moving} == \
        {k: v for k, v in direct.items() if k not in moving}


def test_limits_statistics_and_tap_filters_through_neutron(nsys: NeutronSystem) -> None:
    """taas-server's newer attributes and tap filters, declared in neutron-server: the same
    answers through it as directly, its errors too (Neutron validates none of them)."""
    lab = nsys.lab
    member = {"X-Auth-Token": nsys.ks.token("project-a-member")}
    via = lambda m, path, **kw: nsys.neutron.request(m, path, headers=member, **kw)  # noqa: E731
    direct = lambda m, path, **kw: nsys.taas.request(m, path, headers=member, **kw)  # noqa: E731
    tf_rule = {"priority": 10, "action": "mirror", "protocol": "icmp"}
    r = via("POST", "/v2.0/taas/tap_filters", json={"tap_filter": {"name": "icmp",
                                                                   "rules": [tf_rule]}})
    assert r.status_code == 201, r.text
    flt = r.json()["tap_filter"]
    assert direct("GET", f"/v2.0/taas/tap_filters/{flt['id']}").json() == {"tap_filter": flt}
    r = via("POST", "/v2.0/taas/tap_services", json={"tap_service": {
        "name": "limits", "port_id": lab.vm("vm5").port_id, "max_pps": 1000}})
    assert r.status_code == 201, r.text
    ts = r.json()["tap_service"]
    assert ts["max_pps"] == 1000
    same(via("GET", f"/v2.0/taas/tap_services/{ts['id']}").json()["tap_service"],
         direct("GET", f"/v2.0/taas/tap_services/{ts['id']}").json()["tap_service"])
    r = via("POST", "/v2.0/taas/tap_flows", json={"tap_flow": {
        "tap_service_id": ts["id"], "source_port": lab.vm("vm4").port_id, "direction": "IN",
        "snaplen": 128, "tap_filter_id": flt["id"]}})
    assert r.status_code == 201, r.text
    tf = r.json()["tap_flow"]
    assert (tf["snaplen"], tf["tap_filter_id"]) == (128, flt["id"])
    same(via("GET", f"/v2.0/taas/tap_flows/{tf['id']}").json()["tap_flow"],
         direct("GET", f"/v2.0/taas/tap_flows/{tf['id']}").json()["tap_flow"])
    r = via("PUT", f"/v2.0/taas/tap_flows/{tf['id']}", json={"tap_flow": {"snaplen": 256}})
    assert r.status_code == 200 and r.json()["tap_flow"]["snaplen"] == 256
    bad = {"tap_flow": {"snaplen": 10}}
    r_via = via("PUT", f"/v2.0/taas/tap_flows/{tf['id']}", json=bad)
    r_direct = direct("PUT", f"/v2.0/taas/tap_flows/{tf['id']}", json=bad)
    assert r_via.status_code == r_direct.status_code == 400
    assert r_via.json()["NeutronError"]["type"] == r_direct.json()["NeutronError"]["type"]
    assert r_via.json()["NeutronError"]["message"] == r_direct.json()["NeutronError"]["message"]
    assert via("DELETE", f"/v2.0/taas/tap_services/{ts['id']}").status_code == 204
    nsys.wait_gone("tap_flows", tf["id"])  # with its service, once the agents are done
    nsys.wait_gone("tap_services", ts["id"])
    assert via("DELETE", f"/v2.0/taas/tap_filters/{flt['id']}").status_code == 204


def test_sdk_and_cli_through_neutron(nsys: NeutronSystem, sdk: Any,
                                     member_b: dict[str, str]) -> None:
    lab = nsys.lab
    # vm6 (host3) as the monitor: the mirroring tests' service still holds `mon`.
    mon, vm1, vm3 = lab.vm("vm6"), lab.vm("vm1"), lab.vm("vm3")
    ts = sdk.network.create_tap_service(name="via-neutron", port_id=mon.port_id)
    assert ts.project_id == nsys.project("project-a")  # the member's, from its token
    tf = sdk.network.create_tap_flow(name="via-neutron", tap_service_id=ts.id,
                                     source_port=vm1.port_id, direction="OUT")
    assert sdk.network.update_tap_service(ts, name="renamed").name == "renamed"
    assert ts.id in {s.id for s in sdk.network.tap_services()}
    assert sdk.network.get_tap_flow(tf.id).source_port == vm1.port_id
    nsys.wait_status("tap_flows", tf.id, "ACTIVE")
    assert sdk.network.get_tap_flow(tf.id).status == "ACTIVE"  # taas-server's status
    # The copies arrive.
    assert lab.ping("vm1", "vm3", 1)
    probe = frame(vm1.mac, vm3.mac, "via-neutron")
    with lab.capture("vm6", direction="in") as cap:
        lab.send_frames("vm1", [probe])
        cap.wait_for(1, timeout=5, match=lambda f: f == probe)
    assert probes(cap.frames) == [probe]
    # Another project's member, with its own Keystone token: exactly what taas-server itself
    # answers (its show, another project's port in a flow, another project's tap service).
    via = nsys.neutron.get(f"/v2.0/taas/tap_services/{ts.id}", headers=member_b)
    direct = nsys.taas.get(f"/v2.0/taas/tap_services/{ts.id}", headers=member_b)
    assert via.status_code == direct.status_code == 404
    assert via.json() == direct.json()
    assert via.json()["NeutronError"]["type"] == "TapServiceNotFound"
    assert nsys.neutron.get("/v2.0/taas/tap_services", headers=member_b).json() == \
        {"tap_services": []}
    body = {"tap_flow": {"tap_service_id": ts.id, "source_port": lab.vm("vm5").port_id,
                         "direction": "IN"}}
    via = nsys.neutron.post("/v2.0/taas/tap_flows", headers=member_b, json=body)
    direct = nsys.taas.post("/v2.0/taas/tap_flows", headers=member_b, json=body)
    assert via.status_code == direct.status_code and via.status_code in (403, 404)
    assert via.json() == direct.json()
    # No token, a garbage token: Neutron's own 401 (keystonemiddleware), nothing forwarded.
    bare = httpx.get(f"{lab.state['neutron']['url']}/v2.0/taas/tap_services", timeout=30)
    assert bare.status_code == 401
    forged = nsys.neutron.get("/v2.0/taas/tap_services", headers={"X-Auth-Token": "x" * 40})
    assert forged.status_code == 401
    # Tap mirrors.
    tm = sdk.network.create_tap_mirror(name="gre", port_id=vm3.port_id, remote_ip="192.0.2.10",
                                       directions={"IN": 101, "OUT": 102}, mirror_type="gre")
    assert tm.id in {m.id for m in sdk.network.tap_mirrors()}
    sdk.network.delete_tap_mirror(tm)
    # The openstack CLI.
    listed = osc(nsys, "tap", "service", "list")
    assert ts.id in {row["ID"] for row in listed}
    shown = osc(nsys, "tap", "flow", "show", tf.id)
    assert shown["source_port"] == vm1.port_id
    # Same call, through neutron-server vs directly (p50 of 20).
    def p50(c: httpx.Client) -> float:
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            assert c.get("/v2.0/taas/tap_services").status_code == 200
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1000
    print(f"[neutron] GET tap_services p50: via neutron-server {p50(nsys.neutron):.1f} ms, "
          f"taas-server directly {p50(nsys.taas):.1f} ms")
    sdk.network.delete_tap_flow(tf)
    sdk.network.delete_tap_service(ts)
    nsys.wait_gone("tap_services", ts.id)


@pytest.fixture(scope="module")
def tempest_run(nsys: NeutronSystem, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[SuiteRun]:
    """neutron-tempest-plugin's TaaS API tests, started in the background as soon as a test
    asks (the openstacksdk suite runs meanwhile: wall time); stopped at the end whatever."""
    run = start_tempest_suite(nsys.ks, tmp_path_factory.mktemp("tempest"))
    yield run
    run.stop()


def test_openstacksdk_functional_taas_tests_through_neutron(nsys: NeutronSystem,
                                                            tempest_run: SuiteRun,
                                                            tmp_path: Path) -> None:
    """openstacksdk's functional TaaS tests, unchanged, with neutron-server as the catalog's
    network endpoint: networks and ports are Neutron's, made by the tests a moment before
    their tap services (taas-server reads such a port from Neutron ahead of its
    notification)."""
    for user, project in (("a-member", "project-a"), ("b-member", "project-b")):
        if user not in nsys.ks.users:
            nsys.ks.add_user(user, project, ["member"])
    counts = run_sdk_suite(nsys.ks, "a-member", "b-member", tmp_path)
    assert counts == all_passed(SDK_TESTS)


def test_neutron_tempest_plugin_taas_api_tests_through_neutron(tempest_run: SuiteRun) -> None:
    """neutron-tempest-plugin's TaaS API tests, unchanged, against neutron-server's endpoint
    (tempest's dynamic credentials: a new project and member per test class)."""
    assert tempest_run.result() == all_passed(TEMPEST_TESTS)


def test_taas_server_down_is_a_clear_503(nsys: NeutronSystem) -> None:
    """Last in the module: taas-server is stopped for good."""
    pid = nsys.lab.state["server"]["pid"]
    os.kill(pid, signal.SIGTERM)

    def stopped() -> bool:
        try:  # our child: reap it
            return os.waitpid(pid, os.WNOHANG)[0] == pid
        except ChildProcessError:
            return not os.path.exists(f"/proc/{pid}")

    wait_until(stopped, 30, 0.1, what="taas-server stopped")
    t0 = time.monotonic()
    r = nsys.neutron.get("/v2.0/taas/tap_services")
    took = time.monotonic() - t0
    assert r.status_code == 503, r.text
    assert r.json()["NeutronError"]["type"] == "TaasServerUnavailable"
    assert "Traceback" not in r.text and "127.0.0.1" not in r.text
    assert nsys.neutron.get("/v2.0/networks").status_code == 200  # the rest of Neutron works
    print(f"[neutron] taas-server down: neutron-server answers 503 in {took * 1000:.0f} ms")
