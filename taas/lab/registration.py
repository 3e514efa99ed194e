"""Registering a lab's networks and ports in a taas-server (its Neutron-format inventory).

Through the project's own API client (taas/cli/client.py). The server URL and token are kept
in the state file so that `down` can unregister even a crashed lab.
"""

from __future__ import annotations

from typing import Any

from taas.cli.client import Client, ConnectionFailed, TaasError
from taas.lab.handle import LabHandle


def _create(c: Client, kind: str, body: dict[str, Any], label: str) -> None:
    try:
        c.create(kind, body)
    except TaasError as e:
        # 409: registered before (a shared server, a lab reset in between): keep it.
        if e.status != 409:
            raise RuntimeError(f"register {kind} {label}: {e}") from e


def unregister_state(state: dict[str, Any], timeout: float = 3) -> None:
    """Delete the lab's ports and networks from the server recorded in `state`, if any.
    Best effort: a server that is gone has nothing left to undo."""
    reg = state.get("server")
    if not reg or not reg.get("token"):
        return
    with Client(reg["url"], reg["token"], timeout=timeout) as c:
        for kind, ids in (("port", reg.get("ports", [])), ("network", reg.get("networks", []))):
            for rid in ids:
                try:
                    c.delete(kind, rid)
                except ConnectionFailed:
                    return
                except TaasError:  # already gone, or refused: nothing more we can do
                    continue


class RegistrationMixin(LabHandle):
    def register(self, server: str, token: str, timeout: float = 10) -> None:
        """Register the lab's networks and ports in a taas-server inventory (Neutron format);
        idempotent (409 = already there)."""
        reg: dict[str, Any] = {"url": server, "token": token, "networks": [], "ports": []}
        self.state["server"] = reg
        with Client(server, token, timeout=timeout) as c:
            for n in self.state["networks"]:
                _create(c, "network", {
                    "id": n["id"], "name": n["name"], "project_id": n["project_id"],
                    "tenant_id": n["project_id"], "provider:network_type": "vxlan",
                    "provider:segmentation_id": n["vni"], "admin_state_up": True}, n["name"])
                reg["networks"].append(n["id"])
            for v in self.state["vms"]:
                _create(c, "port", {
                    "id": v["port_id"], "name": v["name"], "network_id": v["network_id"],
                    "project_id": v["project_id"], "tenant_id": v["project_id"],
                    "mac_address": v["mac"], "device_owner": "compute:nova",
                    "device_id": v.get("device_id", ""), "admin_state_up": True,
                    "fixed_ips": [{"ip_address": v["ip"]}]}, v["name"])
                reg["ports"].append(v["port_id"])
        self.save()

    def unregister(self, timeout: float = 3) -> None:
        unregister_state(self.state, timeout)
        self.state.pop("server", None)
        self.save()
