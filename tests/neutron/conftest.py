"""One Neutron lab for the package: Keystone, a real neutron-server + neutron-openvswitch-agent
per host, taas-server behind Keystone with the Neutron port backend, one taas-agent per host
(taas/lab/neutron). Every call carries a real Keystone token."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from taas.agent.ovs.tables import COOKIE
from taas.lab import Lab
from taas.lab.keystone import Keystone
from taas.lab.neutron import keystone_of, up
from taas.lab.pytest_plugin import unique_name
from taas.testing.wait import wait_until

# Three hypervisors (host3 carries no taas traffic: its underlay must see no taas VNI); the
# monitor in a network of its own (every frame it gets is a mirrored copy); vm4 in net-b has
# vm1's MAC; vmx exists to be deleted in Neutron.
SPEC: dict[str, Any] = {
    "hosts": ["host1", "host2", "host3"],
    "networks": [
        {"name": "net-a", "project_id": "project-a", "vni": 100},
        {"name": "net-b", "project_id": "project-a", "vni": 101},
        {"name": "net-m", "project_id": "project-a", "vni": 102},
    ],
    "vms": [
        {"name": "mon", "network": "net-m", "host": "host1"},
        {"name": "vm1", "network": "net-a", "host": "host1", "mac": "fa:16:3e:00:0a:01"},
        {"name": "vm2", "network": "net-a", "host": "host2", "mac": "fa:16:3e:00:0a:02"},
        {"name": "vm3", "network": "net-a", "host": "host1", "mac": "fa:16:3e:00:0a:03"},
        {"name": "vm4", "network": "net-b", "host": "host1", "mac": "fa:16:3e:00:0a:01"},
        {"name": "vm5", "network": "net-b", "host": "host2", "mac": "fa:16:3e:00:0a:05"},
        {"name": "vm6", "network": "net-a", "host": "host3", "mac": "fa:16:3e:00:0a:06"},
        {"name": "vmx", "network": "net-a", "host": "host2", "mac": "fa:16:3e:00:0a:07"},
    ],
}
TAAS_COOKIE = f"cookie={COOKIE:#x}/-1"


@dataclass
class NeutronSystem:
    lab: Lab
    ks: Keystone  # the lab's
    taas: httpx.Client  # taas-server, the cloud admin's token
    neutron: httpx.Client  # neutron-server, the cloud admin's token

    def project(self, name: str) -> str:
        """Keystone's id of a project of the spec (or one a test made)."""
        return self.ks.project_id(name)

    def create(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        singular = kind[:-1]
        body = {"project_id": self.project("project-a"), **body}
        r = self.taas.post(f"/v2.0/taas/{kind}", json={singular: body})
        assert r.status_code == 201, r.text
        return dict(r.json()[singular])

    def delete(self, kind: str, rid: str) -> None:
        r = self.taas.delete(f"/v2.0/taas/{kind}/{rid}")
        assert r.status_code in (204, 404), r.text

    def wait_status(self, kind: str, rid: str, status: str, timeout: float = 20) -> None:
        def ok() -> bool:
            r = self.taas.get(f"/v2.0/taas/{kind}/{rid}")
            return r.status_code == 200 and r.json()[kind[:-1]]["status"] == status
        wait_until(ok, timeout, 0.1, what=f"{kind} {rid} {status}")

    def wait_gone(self, kind: str, rid: str, timeout: float = 20) -> None:
        wait_until(lambda: self.taas.get(f"/v2.0/taas/{kind}/{rid}").status_code == 404,
                   timeout, 0.1, what=f"{kind} {rid} gone")

    def taas_flows(self, host: str) -> dict[str, list[str]]:
        """The taas flows of a host's bridges (br-tap may not exist)."""
        out: dict[str, list[str]] = {}
        for br in ("br-int", "br-tun", "br-tap"):
            cp = self.lab.ovs(host, ["ovs-ofctl", "-O", "OpenFlow14", "--no-stats",
                                     "dump-flows", br, TAAS_COOKIE], check=False)
            out[br] = [ln.strip() for ln in (cp or "").splitlines()
                       if ln.strip() and "reply" not in ln]
        return out


@pytest.fixture(scope="package")
def nsys() -> Iterator[NeutronSystem]:
    """One lab for the package (a bring-up costs ~60 s): the mirroring module, then the
    plugin module, whose last test stops taas-server."""
    t0 = time.monotonic()
    lab = up(SPEC, unique_name("n"), autoclean=True)
    print(f"[neutron] lab up in {time.monotonic() - t0:.1f} s: {lab.state['neutron']['timings']}")
    srv = lab.state["server"]
    taas = httpx.Client(base_url=srv["url"], headers={"X-Auth-Token": srv["token"]}, timeout=30)
    neutron = httpx.Client(base_url=lab.state["neutron"]["url"], timeout=30,
                           headers={"X-Auth-Token": lab.state["neutron"]["token"]})
    try:
        yield NeutronSystem(lab, keystone_of(lab), taas, neutron)
    finally:
        taas.close()
        neutron.close()
        lab.down()
