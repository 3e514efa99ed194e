"""Lab lifecycle: nothing left behind, crash cleanup, two labs at once, N hosts, custom specs,
spec resolution, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from taas.lab import Lab, destroy, lab_dir
from taas.lab.pytest_plugin import unique_name
from taas.lab.sh import KILLED, read_pidfile
from taas.lab.spec import SpecError, load_spec, resolve, spread

pytestmark = pytest.mark.ovs


def _netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {ln.split()[0] for ln in out.splitlines() if ln.strip()}


def _root_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return {ln.split(":")[1].strip().split("@")[0] for ln in out.splitlines()}


def _live_procs_mentioning(text: str) -> list[str]:
    found = []
    for ent in os.listdir("/proc"):
        if not ent.isdigit() or int(ent) == os.getpid():
            continue
        try:
            cl = Path(f"/proc/{ent}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{ent}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cl and state != "Z":
            found.append(f"{ent}: {cl}")
    return found


def track_daemons(name: str) -> None:
    """Have `lab_reaper` wait for this lab's daemons even when another process kills them."""
    for pf in lab_dir(name).glob("*/*.pid"):
        if (pid := read_pidfile(str(pf))) is not None:
            KILLED.add(pid)


def assert_gone(name: str, links_before: set[str]) -> None:
    assert not [n for n in _netns() if n.startswith(f"tlab-{name}-")]
    assert not lab_dir(name).exists()
    assert not _live_procs_mentioning(f"/taas-lab-{name}/")
    assert _root_links() <= links_before  # no veth ever reaches the root namespace


def test_down_leaves_nothing_and_two_labs_run_at_once(
        lab_factory: Callable[..., Lab]) -> None:
    links = _root_links()
    a = lab_factory()
    b = lab_factory()
    assert a.state["underlay_cidr"] != b.state["underlay_cidr"]
    for lb in (a, b):
        assert lb.ping("vm1", "vm2", 2).ok and lb.ping("vm4", "vm5", 2).ok
        pids = [int(Path(h.run_dir, f"{d}.pid").read_text()) for h in lb.hosts
                for d in ("ovsdb-server", "ovs-vswitchd")]
        assert all(Path(f"/proc/{p}").exists() for p in pids)
    a.down()
    assert_gone(a.name, links)
    # The other lab is untouched.
    assert b.ping("vm1", "vm3", 2).ok
    b.down()
    assert_gone(b.name, links)


def test_four_hosts(lab_factory: Callable[..., Lab]) -> None:
    lb = lab_factory(hosts=4)
    assert [h.name for h in lb.hosts] == ["host1", "host2", "host3", "host4"]
    assert lb.vm("mon").host == "host1"
    for net in ("net-a", "net-b"):
        on = {v.host for v in lb.vms_in(net)}
        assert on == {"host1", "host2", "host3", "host4"}, net
    for h in lb.hosts:
        assert len(h.vxlan_ports) == 3
    a_vms = lb.vms_in("net-a")
    src = a_vms[0].name
    # A path, not a loss rate: a loaded machine may drop one echo (the first one waits for
    # ARP and an upcall), a missing path drops them all.
    for v in a_vms[1:]:
        assert lb.ping(src, v.ip, 3).received > 0, v.name
    b_vms = lb.vms_in("net-b")
    for v in b_vms[1:]:
        assert lb.ping(b_vms[0].name, v.ip, 3).received > 0, v.name
    assert lb.tcp_transfer(a_vms[0].name, a_vms[-1].name, 500_000) == 500_000


def test_custom_spec_same_mac_and_third_network(lab_factory: Callable[..., Lab]) -> None:
    spec = load_spec(None)
    spec["networks"].append({"name": "net-c", "project_id": "project-a", "vni": 102,
                             "cidr": "10.10.3.0/24"})
    mac = "fa:16:3e:00:00:42"
    spec["vms"] += [{"name": "vm6", "network": "net-c", "host": "host1", "mac": mac},
                    {"name": "vm7", "network": "net-c", "host": "host2"},
                    {"name": "vm8", "network": "net-a", "host": "host2", "mac": mac,
                     "ip": "10.10.1.50"}]
    lb = lab_factory(spec)
    assert lb.vm("vm6").mac == lb.vm("vm8").mac == mac
    assert lb.vm("vm8").ip == "10.10.1.50"
    assert lb.network("net-c").vni == 102
    assert lb.host("host1").local_vlans[lb.network("net-c").id] == 3
    assert lb.ping("vm6", "vm7", 2).ok
    assert lb.ping("vm1", "vm8", 2).ok
    assert lb.ping("vm8", "vm2", 2).ok


def test_cleanup_after_crashed_creator(lab_reaper: None) -> None:
    links = _root_links()
    name = unique_name("c")
    # A creator killed in the middle of `up` (wherever that is) ...
    p = subprocess.Popen([sys.executable, "-m", "taas.lab.cli", "up", "--name", name,
                          "--hosts", "3"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        pidfile = lab_dir(name) / "host1" / "ovs-vswitchd.pid"
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        # It did leave daemons and namespaces behind.
        track_daemons(name)
        assert _live_procs_mentioning(f"/taas-lab-{name}/")
        assert [n for n in _netns() if n.startswith(f"tlab-{name}-")]
    finally:
        # ... is cleaned up by name, with the CLI.
        subprocess.run([sys.executable, "-m", "taas.lab.cli", "down", "--name", name],
                       check=True, timeout=60)
    assert_gone(name, links)


def test_cli_up_status_exec_ovs_down(tmp_path: Path, lab_reaper: None) -> None:
    links = _root_links()
    name = unique_name("k")
    state = tmp_path / "lab.json"
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({
        "hosts": ["h1", "h2"],
        "networks": [{"name": "n1", "project_id": "p1", "vni": 7}],
        "vms": [{"name": "a", "network": "n1", "host": "h1"},
                {"name": "b", "network": "n1", "host": "h2"}],
    }))
    cli = [sys.executable, "-m", "taas.lab.cli"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], capture_output=True, text=True, timeout=120)

    try:
        r = run("up", "--spec", str(spec), "--name", name, "--state", str(state))
        assert r.returncode == 0, r.stderr
        st = json.loads(state.read_text())
        assert st["name"] == name and [v["name"] for v in st["vms"]] == ["a", "b"]
        assert st["collectors"] == [] and st["agents"] == []
        r = run("status", "--state", str(state))
        assert r.returncode == 0 and "vm a: host h1" in r.stdout and "br-tun" in r.stdout
        r = run("exec", "--state", str(state), "a", "--", "ping", "-c1", "-W2",
                st["vms"][1]["ip"])
        assert r.returncode == 0, r.stdout + r.stderr
        r = run("ovs", "--state", str(state), "h2", "--", "ovs-ofctl", "dump-flows", "br-int")
        assert r.returncode == 0 and "actions=NORMAL" in r.stdout
        r = run("ovs", "--state", str(state), "h1", "--", "ovs-vsctl", "list-br")
        assert r.stdout.split() == ["br-int", "br-phy", "br-tun"]
        r = run("ovs", "--state", str(state), "h1", "--", "ovs-appctl", "dpif/show")
        assert r.returncode == 0 and "br-int" in r.stdout
        track_daemons(name)
        r = run("down", "--state", str(state))
        assert r.returncode == 0, r.stderr
    finally:
        destroy(name)
    assert not state.exists()
    assert_gone(name, links)


def test_spec_resolution() -> None:
    a = resolve(load_spec(None), "x1")
    b = resolve(load_spec(None), "x1")
    assert a == b  # deterministic
    c = resolve(load_spec(None), "x2")
    assert {v.port_id for v in a.vms}.isdisjoint({v.port_id for v in c.vms})
    assert [v.name for v in a.vms] == ["mon", "vm1", "vm2", "vm3", "vm4", "vm5"]
    assert [(n.name, n.project_id, n.vni) for n in a.networks] == \
        [("net-a", "project-a", 100), ("net-b", "project-b", 101)]
    assert [(v.name, v.host) for v in a.vms] == [("mon", "host1"), ("vm1", "host1"),
                                                ("vm2", "host2"), ("vm3", "host2"),
                                                ("vm4", "host1"), ("vm5", "host2")]
    assert len({v.mac for v in a.vms}) == 6 and len({v.ip for v in a.vms}) == 6
    assert [c.name for c in a.collectors] == ["col1"]
    s4 = resolve(spread(load_spec(None), 4), "x1")
    assert [h.name for h in s4.hosts] == ["host1", "host2", "host3", "host4"]
    assert next(v for v in s4.vms if v.name == "mon").host == "host1"
    bad = load_spec(None)
    bad["networks"][0]["vni"] = 16_003_950
    with pytest.raises(SpecError):
        resolve(bad, "x1")
    dup = load_spec(None)
    dup["vms"][1]["mac"] = dup["vms"][2]["mac"] = "fa:16:3e:00:00:01"  # same network
    with pytest.raises(SpecError):
        resolve(dup, "x1")
    with pytest.raises(SpecError):
        resolve(load_spec(None), "bad-name")
