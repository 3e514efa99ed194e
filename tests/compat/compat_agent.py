"""A minimal agent loop on the wire, importable by any taas source tree (old or new): it uses
only ``taas.agent.client.ServerClient`` and ``taas.common.desired_state``, the contract under
test. Run as a script with PYTHONPATH set to the tree whose contract it should speak:

    python compat_agent.py URL TOKEN HOST SECONDS PORT_ID...

It registers, sends its ports, long-polls its desired state and reports every resource of
each state as ACTIVE (with their taas_ids), as taas-agent does after a successful sync. Each
state it receives is printed as one JSON line (revision and resource ids).
"""

from __future__ import annotations

import json
import sys
import time
from types import SimpleNamespace

from taas.agent.client import ServerClient, ServerError
from taas.common.desired_state import HostReport, ResourceStatus


def main(url: str, token: str, host: str, seconds: float, port_ids: list[str]) -> None:
    client = ServerClient(url, token, host)
    ports = [SimpleNamespace(port_id=p, ofport=i + 1, local_vlan=1, mac="fa:16:3e:00:00:01",
                             name=f"tap{i}") for i, p in enumerate(port_ids)]
    revision = None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            client.heartbeat("172.30.0.1")
            client.report_ports(ports)
            state = client.get_desired_state(revision, 2)
            resources = [ResourceStatus(kind, r.id, "ACTIVE")
                         for kind, rows in (("tap_service", state.tap_services),
                                            ("tap_flow", state.tap_flows),
                                            ("tap_mirror", state.tap_mirrors)) for r in rows]
            client.report(HostReport(host, state.revision, tuple(resources),
                                     tuple(sorted({s.taas_id for s in state.tap_services}))))
        except ServerError as exc:
            print(json.dumps({"error": str(exc)}), flush=True)
            time.sleep(0.2)
            continue
        revision = state.revision
        print(json.dumps({"revision": state.revision,
                          "ids": sorted(r.id for r in resources)}), flush=True)
    client.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5:])
