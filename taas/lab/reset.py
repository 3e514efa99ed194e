"""`Lab.reset()`: back to the state right after `up`, without rebuilding (docs/lab.md,
"Reset contract")."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from taas.lab.agents import AgentsMixin
from taas.lab.builder import tunnel_neighbors, vm_port_cmd
from taas.lab.sh import kill_pids, run
from taas.lab.state import LAB_BRIDGES, Host

_COOKIE = re.compile(r"cookie=(0x[0-9a-f]+)")


class ResetMixin(AgentsMixin):
    def reset(self) -> None:
        """Agents stopped, server registration forgotten, processes in VMs/collectors killed,
        every bridge but br-int/br-tun/br-phy deleted, every port the lab did not make deleted,
        Mirrors cleared, every flow whose cookie is not the L2 cookie deleted and the L2 flows
        re-added, MAC tables flushed, VM ports' tag/external_ids restored, tunnel neighbours
        refreshed."""
        if self.state.get("agents"):
            self.stop_agents()
        self.state.pop("server", None)
        # Whatever a test left running in a VM or collector (servers, captures).
        pids: set[int] = set()
        for ns in [v.netns for v in self.vms] + [c.netns for c in self.collectors]:
            out = run(["ip", "netns", "pids", ns], check=False)
            pids |= {int(p) for p in out.split() if p.isdigit()}
        kill_pids(pids)
        with ThreadPoolExecutor(max_workers=len(self.hosts)) as ex:
            list(ex.map(self._reset_host, self.hosts))
        self.save()

    def _reset_host(self, h: Host) -> None:
        self._reset_ports(h)
        for b in LAB_BRIDGES:
            # Delete by each foreign cookie, then re-add the L2 flows (restores any the test
            # changed or deleted) in the same form as `up` installed them.
            cookies = {m.group(1) for f in self.dump_flows(h.name, b) if (m := _COOKIE.match(f))}
            for ck in sorted(cookies - {f"{self.l2_cookie:#x}"}):
                self.ovs(h.name, ["ovs-ofctl", "del-flows", b, f"cookie={ck}/-1"])
            flows = Path(h.run_dir, f"{b}.l2flows").read_text()
            self.ovs(h.name, ["ovs-ofctl", "add-flows", b, "-"], input=flows)
            self.ovs(h.name, ["ovs-appctl", "fdb/flush", b], check=False)
        tunnel_neighbors(self.state, h)

    def _reset_ports(self, h: Host) -> None:
        """Foreign bridges and ports deleted, Mirrors cleared, VM ports re-plugged (one
        ovs-vsctl transaction); raises if a VM port cannot get its ofport back."""
        hd = next(x for x in self.state["hosts"] if x["name"] == h.name)
        expected: dict[str, set[str]] = {b: set(p) for b, p in hd["ofports"].items()}
        expected["br-phy"] = {"phy0"}
        out = self.ovs(h.name, ["ovs-vsctl", "--format=json", "--", "--columns=name,ports",
                                "list", "Bridge"])
        ports_out = self.ovs(h.name, ["ovs-vsctl", "--format=json", "--", "--columns=_uuid,name",
                                      "list", "Port"])
        port_names = {r[0][1]: r[1] for r in json.loads(ports_out)["data"]}
        cmds: list[str] = []
        for bridge, ports in json.loads(out)["data"]:
            if bridge not in LAB_BRIDGES:
                cmds += ["--", "--if-exists", "del-br", bridge]
                continue
            uuids = [u[1] for u in ports[1]] if ports[0] == "set" else [ports[1]]
            for u in uuids:
                pn = port_names.get(u)
                if pn and pn != bridge and pn not in expected.get(bridge, set()):
                    cmds += ["--", "--if-exists", "del-port", bridge, pn]
        for b in LAB_BRIDGES:
            cmds += ["--", "clear", "Bridge", b, "mirrors"]
        for v in self.state["vms"]:  # re-plug (if a test unplugged it) and restore tag/ids
            if v["host"] == h.name:
                cmds += vm_port_cmd(v, v["ofport"])
        self.ovs(h.name, ["ovs-vsctl", *cmds])
        now = json.loads(self.ovs(h.name, ["ovs-vsctl", "--format=json", "--",
                                           "--columns=name,ofport", "list", "Interface"]))
        ofp = {r[0]: r[1] for r in now["data"]}
        broken = {p: (n, ofp.get(p)) for p, n in hd["ofports"]["br-int"].items()
                  if ofp.get(p) != n}
        if broken:
            raise RuntimeError(f"lab {self.name} host {h.name}: cannot restore br-int ports "
                               f"{broken} (expected, actual ofport); use a fresh lab")
