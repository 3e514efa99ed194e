"""`make demo`: the main job end to end, on the embedded default.

A taas-server on loopback with SQLite, a 2-host lab (real OVS in namespaces) with one taas-agent
per host, a tenant that creates a tap service on its monitoring VM and tap flows on a local and a
remote VM with the `taas` CLI, real traffic, and what tcpdump saw at the monitor. Everything is
removed at the end, also when a step fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ADMIN_TOKEN = "demo-admin"
TENANT_TOKEN = "demo-project-a"  # a member of project-a, the owner of net-a (mon, vm1, vm2, vm3)


def step(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def run(cmd: list[str], token: str | None = None, check: bool = True,
        capture: bool = False) -> subprocess.CompletedProcess[str]:
    """Run a command, echoing it as a user would type it."""
    env = dict(os.environ)
    if token:
        env["TAAS_TOKEN"] = token
    shown = [os.path.basename(cmd[0]), *cmd[1:]]  # as typed: `taas ...`, not its full path
    print("$ " + " ".join(shown), flush=True)
    res = subprocess.run(cmd, env=env, text=True, capture_output=capture)
    if capture and res.stdout:
        print(res.stdout, end="", flush=True)
    if check and res.returncode != 0:
        if capture:
            print(res.stderr, end="", file=sys.stderr)
        raise SystemExit(f"demo: command failed ({res.returncode}): {' '.join(cmd)}")
    return res


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"demo: taas-server did not answer at {url}")


@contextmanager
def taas_server(workdir: Path) -> Iterator[str]:
    tokens = {
        "tokens": {
            ADMIN_TOKEN: {"project_id": "admin-project", "roles": ["admin"]},
            TENANT_TOKEN: {"project_id": "project-a", "roles": ["member"]},
        }
    }
    (workdir / "tokens.json").write_text(json.dumps(tokens))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(workdir / "taas-server.log", "w")  # noqa: SIM115 - closed below
    cmd = ["taas-server", "--host", "127.0.0.1", "--port", str(port),
           "--db-url", f"sqlite:///{workdir / 'taas.sqlite'}",
           "--tokens-file", str(workdir / "tokens.json")]
    print("$ " + " ".join(cmd) + " &", flush=True)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(url + "/")
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def start_capture(vm: dict[str, Any], pcap: Path) -> subprocess.Popen[str]:
    """tcpdump of ICMP on a VM's interface, returned once it is really listening."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", vm["netns"], "tcpdump", "-i", vm["interface"], "-nn", "-U",
         "-w", str(pcap), "icmp"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    proc.stderr.readline()  # "listening on ...": the capture is live
    return proc


def count_icmp(pcap: Path) -> int:
    """ICMP frames in a pcap that tcpdump is still writing (-U flushes each packet)."""
    res = subprocess.run(["tcpdump", "-nn", "-r", str(pcap), "icmp"], capture_output=True,
                         text=True)
    return len(res.stdout.splitlines())


def wait_active(
    url: str, kind: str, names: list[str], timeout: float = 30.0
) -> list[dict[str, Any]]:
    """Poll the API until the named tap resources are ACTIVE (agents confirmed their flows)."""
    import httpx

    deadline = time.monotonic() + timeout
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        r = httpx.get(f"{url}/v2.0/taas/{kind}", headers={"X-Auth-Token": TENANT_TOKEN})
        rows = [x for x in r.json()[kind] if x["name"] in names]
        if len(rows) == len(names) and all(x["status"] == "ACTIVE" for x in rows):
            return rows
        time.sleep(0.2)
    raise SystemExit(f"demo: {kind} {names} not ACTIVE in {timeout}s: {rows}")


def main() -> int:
    if os.geteuid() != 0:
        print("make demo needs root (network namespaces and Open vSwitch)", file=sys.stderr)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="taas-demo-"))
    state_file = workdir / "lab.json"
    lab_name = f"demo{os.getpid() % 10000}"
    taas = shutil.which("taas") or "taas"
    try:
        step("Start taas-server (FastAPI on uvicorn, SQLite) on loopback")
        with taas_server(workdir) as url:
            os.environ["TAAS_URL"] = url
            step("Build a 2-host lab: OVS per host in its namespace, VXLAN underlay, VMs; "
                 "register its networks and ports and start one taas-agent per host")
            run([taas, "lab", "up", "--name", lab_name, "--state", str(state_file),
                 "--server", url, "--token", ADMIN_TOKEN])
            lab = json.loads(state_file.read_text())
            vms = {vm["name"]: vm for vm in lab["vms"]}
            run([taas, "agent", "list"], token=ADMIN_TOKEN)

            step("As tenant project-a: a tap service on the monitoring VM, tap flows on "
                 "vm1 (same host as mon) and vm2 (the other host)")
            run([taas, "port", "list"], token=TENANT_TOKEN)
            run([taas, "tap", "service", "create", "--port", "mon",
                 "--name", "ids"], token=TENANT_TOKEN)
            run([taas, "tap", "flow", "create", "--port", "vm1",
                 "--tap-service", "ids", "--direction", "BOTH", "--name", "vm1-local"],
                token=TENANT_TOKEN)
            run([taas, "tap", "flow", "create", "--port", "vm2",
                 "--tap-service", "ids", "--direction", "OUT", "--name", "vm2-remote"],
                token=TENANT_TOKEN)
            wait_active(url, "tap_flows", ["vm1-local", "vm2-remote"])
            run([taas, "tap", "flow", "list"], token=TENANT_TOKEN)

            step("Traffic: vm1 pings vm3 (3 packets), vm2 pings vm3 (3 packets); tcpdump "
                 "listens at mon and at vm4 (project-b, on mon's host)")
            mon, vm3, vm4 = vms["mon"], vms["vm3"], vms["vm4"]
            pcap_mon, pcap_vm4 = workdir / "mon.pcap", workdir / "vm4.pcap"
            captures = [start_capture(mon, pcap_mon), start_capture(vm4, pcap_vm4)]
            run([taas, "lab", "exec", "--state", str(state_file), "vm1", "--",
                 "ping", "-c", "3", "-i", "0.2", vm3["ip"]])
            run([taas, "lab", "exec", "--state", str(state_file), "vm2", "--",
                 "ping", "-c", "3", "-i", "0.2", vm3["ip"]])
            # Copies cross two userspace switches and a tunnel: give a loaded machine a moment.
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline and count_icmp(pcap_mon) < 9:
                time.sleep(0.1)
            for tcpdump in captures:
                tcpdump.send_signal(signal.SIGINT)
                tcpdump.wait(10)

            step(f"What tcpdump saw at the monitoring VM mon ({mon['ip']}): "
                 "vm1's requests and replies (BOTH) and vm2's requests (OUT), each once")
            shown = run(["tcpdump", "-nn", "-e", "-r", str(pcap_mon)], capture=True)
            lines = [x for x in shown.stdout.splitlines() if "ICMP" in x]
            from_vm1 = sum(1 for x in lines if f"{vms['vm1']['ip']} > {vm3['ip']}" in x)
            to_vm1 = sum(1 for x in lines if f"{vm3['ip']} > {vms['vm1']['ip']}" in x)
            from_vm2 = sum(1 for x in lines if f"{vms['vm2']['ip']} > {vm3['ip']}" in x)
            to_vm2 = sum(1 for x in lines if f"{vm3['ip']} > {vms['vm2']['ip']}" in x)
            print(f"\nmon saw: vm1->vm3 {from_vm1}, vm3->vm1 {to_vm1}, "
                  f"vm2->vm3 {from_vm2}, vm3->vm2 {to_vm2} (expected 3, 3, 3, 0)")
            leaked = count_icmp(pcap_vm4)
            print(f"vm4 (project-b) saw {leaked} ICMP frames (expected 0: no tenant's traffic "
                  "reaches another)")
            ok = (from_vm1, to_vm1, from_vm2, to_vm2, leaked) == (3, 3, 3, 0, 0)

            step("Clean up: tap service delete (its flows go with it), lab down, server stop")
            run([taas, "tap", "service", "delete", "ids"], token=TENANT_TOKEN)
            run([taas, "lab", "down", "--state", str(state_file)])
        print("\nDEMO " + ("OK: the monitor received exactly the mirrored packets"
                            if ok else "FAILED: unexpected packets at the monitor"))
        return 0 if ok else 1
    finally:
        if state_file.exists():
            subprocess.run([taas, "lab", "down", "--state", str(state_file)],
                           capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
