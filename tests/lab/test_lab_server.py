"""A lab registered in a real taas-server, with one real taas-agent per host."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from taas.lab import Lab
from taas.lab.sh import pid_alive
from taas.testing.server import run_server
from taas.testing.wait import wait_until

pytestmark = pytest.mark.ovs


def test_register_and_agents(lab_factory: Callable[..., Lab]) -> None:
    with run_server() as srv:
        lb = lab_factory(server=srv.url, token=srv.tokens["admin"])
        with srv.client("admin") as c:
            nets = {n["id"]: n for n in c.get("/v2.0/networks").json()["networks"]}
            for n in lb.networks:
                assert nets[n.id]["provider:segmentation_id"] == n.vni
                assert nets[n.id]["project_id"] == n.project_id
            ports = {p["id"]: p for p in c.get("/v2.0/ports").json()["ports"]}
            assert set(ports) == {v.port_id for v in lb.vms}
            for v in lb.vms:
                p = ports[v.port_id]
                assert (p["mac_address"], p["network_id"], p["project_id"], p["device_owner"]) \
                    == (v.mac, v.network_id, v.project_id, "compute:nova")
            # One agent per host, each finds its host's ports (binding:host_id comes from it).
            agents = lb.state["agents"]
            assert sorted(a["host"] for a in agents) == ["host1", "host2"]
            assert all(pid_alive(a["pid"]) for a in agents)
            want = {v.port_id: v.host for v in lb.vms}
            wait_until(lambda: {p["id"]: p["binding:host_id"] for p in
                                c.get("/v2.0/ports").json()["ports"]} == want, 20, 0.1,
                       "every port bound to its VM's host")
            # Registering again (shared server, lab reset in between) is accepted.
            lb.register(srv.url, srv.tokens["admin"])
            lb.down()
            assert not any(pid_alive(a["pid"]) for a in agents)
            assert c.get("/v2.0/ports").json()["ports"] == []
            assert c.get("/v2.0/networks").json()["networks"] == []
