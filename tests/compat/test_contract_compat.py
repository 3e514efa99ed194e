"""Rolling upgrades: an agent of the previous contract (commit be100a8, before the versioned,
tolerant contract and per-host revisions) converges with this server, and this agent's client
with the previous server. Both sides are the real code of their commit: the old tree is
kept as an archive beside this file (tests/compat/taas-be100a8.tar.xz) and runs in its own process.

Converges means, on the wire: the agent gets its host's desired state, reports it, the
resources go ACTIVE from its reports, and a deletion completes once it confirms. (The switch
side of the agent is unchanged by the contract and tested elsewhere.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from taas.testing.server import ServerProcess, run_server
from taas.testing.wait import wait_until

PREVIOUS = "be100a8"
REPO = Path(__file__).resolve().parents[2]
AGENT = Path(__file__).with_name("compat_agent.py")
ARCHIVE = Path(__file__).with_name(f"taas-{PREVIOUS}.tar.xz")


@pytest.fixture(scope="module")
def old_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The previous commit's `taas` package.

    Kept as `git archive be100a8 taas | xz -9` beside this file rather than read from the
    history at test time: a shallow clone (as some CI systems make) has no such commit."""
    dest = tmp_path_factory.mktemp("taas-" + PREVIOUS)
    subprocess.run(["tar", "-xJf", str(ARCHIVE), "-C", str(dest)], check=True)
    return dest


def run_agent(tree: Path, server: ServerProcess, host: str, seconds: float,
              *ports: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.Popen([sys.executable, str(AGENT), server.url, server.tokens["service"],
                             host, str(seconds), *ports], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def converge(server: ServerProcess, tree: Path) -> None:
    """Create a tap service and flow on the agent's ports; they go ACTIVE from the agent's
    reports; deleting them completes once the agent confirms."""
    host = f"compat-{uuid.uuid4().hex[:6]}"
    with server.client("admin") as admin, server.client("a-member") as member:
        net = admin.post("/v2.0/networks", json={"network": {"project_id": "project-a"}})
        net_id = net.json()["network"]["id"]
        dst, src = (admin.post("/v2.0/ports", json={"port": {
            "network_id": net_id, "project_id": "project-a"}}).json()["port"]["id"]
            for _ in range(2))
        agent = run_agent(tree, server, host, 60, dst, src)
        try:
            ts = member.post("/v2.0/taas/tap_services",
                             json={"tap_service": {"port_id": dst}}).json()["tap_service"]
            tf = member.post("/v2.0/taas/tap_flows", json={"tap_flow": {
                "tap_service_id": ts["id"], "source_port": src, "direction": "BOTH"}}
            ).json()["tap_flow"]

            def status(kind: str, id_: str) -> str | None:
                r = admin.get(f"/v2.0/taas/{kind}s/{id_}")
                return None if r.status_code == 404 else r.json()[kind]["status"]

            wait_until(lambda: status("tap_flow", tf["id"]) == "ACTIVE"
                       and status("tap_service", ts["id"]) == "ACTIVE", 30,
                       what="ACTIVE from the agent's reports")
            assert member.delete(f"/v2.0/taas/tap_services/{ts['id']}").status_code == 204
            wait_until(lambda: status("tap_service", ts["id"]) is None
                       and status("tap_flow", tf["id"]) is None, 30,
                       what="deletion confirmed by the agent")
        finally:
            agent.kill()
            out = agent.communicate()[0]
        assert '"error"' not in out, out


def test_previous_agent_converges_with_this_server(old_tree: Path) -> None:
    with run_server() as server:
        converge(server, old_tree)


def test_this_agent_converges_with_the_previous_server(old_tree: Path) -> None:
    server = ServerProcess(None, None, {})
    server.src_root = old_tree  # the previous server's code
    try:
        server.start()
        with httpx.Client(base_url=server.url) as c:  # it is the old one: no digests
            agent = c.put("/v2.0/taas-agents/probe", headers=server.headers("service"),
                          json={"agent": {"tunnel_ip": "172.30.0.9"}}).json()["agent"]
            assert "ports_digest" not in agent
        converge(server, REPO)
    finally:
        server.cleanup()
