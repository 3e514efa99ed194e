"""An operator's oslo.policy file overrides the defaults: here members may no longer create tap
flows (admins still may), with Keystone tokens and with the tokens file alike."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from taas.server.policy import Policy
from taas.testing.keystone import Keystone, run_keystone_server
from taas.testing.server import ServerProcess, run_server

ROOT = Path(__file__).resolve().parents[2]
NO_MEMBER_FLOWS = 'create_tap_flow: "rule:admin_only"\n'


@pytest.fixture(scope="module", params=["keystone", "tokens-file"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[ServerProcess]:
    policy = tmp_path_factory.mktemp("policy") / "policy.yaml"
    policy.write_text(NO_MEMBER_FLOWS)
    if request.param == "keystone":
        ks: Keystone = request.getfixturevalue("keystone")
        with run_keystone_server(ks, policy_file=str(policy)) as srv:
            yield srv
    else:
        with run_server(policy_file=str(policy)) as srv:
            yield srv


def test_policy_file_forbids_members_to_create_tap_flows(server: ServerProcess) -> None:
    project = server.project("project-a")
    admin, member = server.client("admin"), server.client("a-member")
    net = admin.post("/v2.0/networks", json={"network": {"project_id": project}})
    net_id = net.json()["network"]["id"]
    ports = [admin.post("/v2.0/ports", json={"port": {"network_id": net_id}}).json()["port"]
             for _ in range(2)]
    ts = member.post("/v2.0/taas/tap_services", json={"tap_service": {
        "port_id": ports[0]["id"]}})
    assert ts.status_code == 201, ts.text  # everything else keeps its default rule
    flow = {"tap_service_id": ts.json()["tap_service"]["id"], "source_port": ports[1]["id"],
            "direction": "IN"}
    r = member.post("/v2.0/taas/tap_flows", json={"tap_flow": flow})
    assert r.status_code == 403, r.text
    assert r.json()["NeutronError"]["type"] == "PolicyNotAuthorized"
    assert "create_tap_flow" in r.json()["NeutronError"]["message"]
    assert admin.get("/v2.0/taas/tap_flows", params={"project_id": project}).json() == {
        "tap_flows": []}
    r = admin.post("/v2.0/taas/tap_flows", json={"tap_flow": {**flow, "project_id": project}})
    assert r.status_code == 201, r.text
    # Members still read what the admin made for them.
    assert member.get(f"/v2.0/taas/tap_flows/{r.json()['tap_flow']['id']}").status_code == 200
    admin.close()
    member.close()


@pytest.mark.parametrize("content,expected", [
    (None, "does not exist"), ("create_tap_flow: [unbalanced\n", "cannot load policy_file")])
def test_bad_policy_file_stops_the_server(tmp_path: Path, content: str | None,
                                          expected: str) -> None:
    policy = tmp_path / "policy.yaml"
    if content is not None:
        policy.write_text(content)
    res = subprocess.run([sys.executable, "-m", "taas.server.cli", "--db-url",
                          f"sqlite:///{tmp_path / 'x.sqlite'}", "--policy-file", str(policy),
                          "--port", "1"], capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 2, res.stderr
    assert expected in res.stderr


def test_sample_lists_every_default_rule() -> None:
    sample = Policy.sample()
    for rule in ("create_tap_flow", "get_tap_service", "create_port:mac_address",
                 "create_network:provider:segmentation_id", "update_quota", "taas_agent"):
        assert f'#"{rule}":' in sample
