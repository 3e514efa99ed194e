"""taas on a real Neutron (`taas lab up --neutron`): API call -> first mirrored packet, and TCP
throughput between two VMs with and without a tap flow.

    python -m bench.neutron_bench [--runs 20] [--interval 0.01] [--tcp-bytes 20000000]
                                  [--watch-underlay 120] [--api 50 [--api-only]]

The lab: neutron-server + one neutron-openvswitch-agent per host (port security on), taas-server
with the Neutron port backend, one taas-agent per host (`--hook-table 60`). A tap service on
`mon` (host1). Latency: the sources ping continuously, vm1 -> vm3 (host1: *local*) and
vm2 -> vm3 (host2: *remote*, copies cross VXLAN); per run a tap flow (OUT) is created at t0 and
the first copy's pcap timestamp at mon is taken (it includes up to one ping interval), then the
flow is deleted and its removal awaited. Throughput: `--tcp-bytes` from vm1 (host1) to vm2
(host2), 3 transfers without a tap flow, then 3 with a BOTH tap flow on vm1 (every segment and
ack copied to mon). `--watch-underlay S`: then a remote tap flow (vm2 on host2 -> mon on host1)
with traffic for S seconds while host3's underlay is captured: the number of frames with a
taas VNI there (must be 0: copies go by unicast to the monitor's host only, no flooding, no
timers). `--api N`: the same TaaS call through neutron-server (its TaaS plugin) and directly to
taas-server, alternately, N times each, with a project member's Keystone token (both validate
it; each caches validations): raw HTTP (list, show, update), openstacksdk (catalog endpoint vs
`network_endpoint_override`) and the `openstack` CLI (a new process per call, 5 each).
Prints the machine, then p50/p90/p99/max and MB/s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.e2e_bench import is_request, machine, pcap_records, pct, stop_all, wait
from taas.lab.neutron import keystone_of, up
from taas.lab.pytest_plugin import unique_name

SPEC: dict[str, Any] = {
    "hosts": ["host1", "host2", "host3"],
    "networks": [{"name": "net-a", "project_id": "project-a", "vni": 100},
                 {"name": "net-m", "project_id": "project-a", "vni": 101}],
    "vms": [{"name": "mon", "network": "net-m", "host": "host1"},
            {"name": "vm1", "network": "net-a", "host": "host1"},
            {"name": "vm2", "network": "net-a", "host": "host2"},
            {"name": "vm3", "network": "net-a", "host": "host1"},
            {"name": "vm6", "network": "net-a", "host": "host3"}],
}


def one_run(api: httpx.Client, pcap: Any, src_ip: str, dst_ip: str, port_id: str,
            ts_id: str, project: str) -> float | None:
    seen = len(pcap_records(pcap))
    t0 = time.time()
    r = api.post("/v2.0/taas/tap_flows", json={"tap_flow": {
        "project_id": project, "source_port": port_id, "tap_service_id": ts_id,
        "direction": "OUT"}})
    assert r.status_code == 201, r.text
    tf_id = r.json()["tap_flow"]["id"]
    first = wait(lambda: next((t for t, f in pcap_records(pcap)[seen:]
                               if t >= t0 and is_request(f, src_ip, dst_ip)), None), 5)
    api.delete(f"/v2.0/taas/tap_flows/{tf_id}")
    wait(lambda: api.get(f"/v2.0/taas/tap_flows/{tf_id}").status_code == 404, 10, 0.01)
    time.sleep(0.1)  # the copies of the deleted flow have drained
    return None if first is None else first - t0


def throughput(lab: Any, nbytes: int) -> float:
    t0 = time.monotonic()
    got = lab.tcp_transfer("vm1", "vm2", nbytes, timeout=60)
    dt = time.monotonic() - t0
    if got != nbytes:
        raise RuntimeError(f"TCP transfer: {got} of {nbytes} bytes")
    return nbytes / dt / 1e6


TAAS_VNIS = range(16_003_900, 16_004_000)  # tunnel_key_base + the taas_id range (defaults)


def vxlan_vnis(frames: list[bytes]) -> list[int]:
    """VNIs of the VXLAN (UDP 4789) frames of an underlay capture."""
    out = []
    for f in frames:
        if len(f) < 50 or f[12:14] != b"\x08\x00" or f[23] != 17:
            continue
        udp = 14 + (f[14] & 0x0F) * 4
        if struct.unpack("!H", f[udp + 2:udp + 4])[0] == 4789:
            out.append(int.from_bytes(f[udp + 12:udp + 15], "big"))
    return out


def watch_underlay(lab: Any, api: httpx.Client, ts_id: str, seconds: float) -> None:
    vm = {v.name: v for v in lab.vms}
    r = api.post("/v2.0/taas/tap_flows", json={"tap_flow": {
        "project_id": lab.state["keystone"]["projects"]["project-a"],
        "source_port": vm["vm2"].port_id, "tap_service_id": ts_id,
        "direction": "BOTH"}})
    tf_id = r.json()["tap_flow"]["id"]
    wait(lambda: api.get(f"/v2.0/taas/tap_flows/{tf_id}").json()["tap_flow"]["status"]
         == "ACTIVE", 20, 0.05)
    with lab.captures({"host3": None, "mon": (None, "icmp")}, direction="in") as caps:
        ping = lab.popen("vm2", ["ping", "-q", "-n", "-i", "0.1", "-w", str(int(seconds)),
                                 vm["vm1"].ip], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
        ping.wait(seconds + 30)
        # Sentinel: a broadcast of net-a reaches host3 (VNI 100): the capture does see VXLAN.
        bcast = bytes.fromhex("ffffffffffff" + vm["vm2"].mac.replace(":", "") + "88b5") + \
            b"underlay-sentinel".ljust(50, b".")
        lab.send_frames("vm2", [bcast])
        caps["host3"].wait_for(1, timeout=5, match=lambda f: 100 in vxlan_vnis([f]))
    vnis = vxlan_vnis(caps["host3"].frames)
    taas = [v for v in vnis if v in TAAS_VNIS]
    print(f"\nunderlay of host3 over {seconds:g} s of a remote BOTH tap flow (vm2 host2 -> mon "
          f"host1, ping 10 pps): {len(vnis)} VXLAN frames ({vnis.count(100)} of net-a, the "
          f"sentinel broadcast), {len(taas)} with a taas VNI; "
          f"{len(caps['mon'].frames)} copies at the monitor")


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def _row(label: str, via: list[float], direct: list[float]) -> None:
    print(f"  {label:<34}" + "".join(f"{pct(v, 50):9.1f}{pct(v, 90):8.1f}"
                                       for v in (via, direct)))


def api_paths(lab: Any, n: int) -> None:
    """One TaaS call through neutron-server vs directly, alternately, with Keystone."""
    import yaml
    from openstack import connection
    from openstack.config import OpenStackConfig

    ks = keystone_of(lab)
    token = ks.token("project-a-member")
    neutron_url, taas_url = lab.state["neutron"]["url"], lab.state["server"]["url"]
    clients = {name: httpx.Client(base_url=url, headers={"X-Auth-Token": token}, timeout=60)
               for name, url in (("via", neutron_url), ("direct", taas_url))}
    via, direct = clients["via"], clients["direct"]
    r = via.post("/v2.0/taas/tap_services", json={"tap_service": {
        "name": "api-bench", "port_id": next(v.port_id for v in lab.vms if v.name == "vm6")}})
    assert r.status_code == 201, r.text
    ts_id = r.json()["tap_service"]["id"]
    calls = {
        "GET /v2.0/taas/tap_services": lambda c, i: c.get("/v2.0/taas/tap_services"),
        "GET /v2.0/taas/tap_services/{id}": lambda c, i: c.get(f"/v2.0/taas/tap_services/{ts_id}"),
        "PUT /v2.0/taas/tap_services/{id}": lambda c, i: c.put(
            f"/v2.0/taas/tap_services/{ts_id}", json={"tap_service": {"name": f"n{i}"}}),
    }
    print(f"\nthe same TaaS call, {n} times each way, alternately, as project-a's member "
          "(Keystone token), ms:")
    print(f"  {'call':<34}{'via neutron-server':>17}{'directly':>17}")
    print(f"  {'':<34}" + f"{'p50':>9}{'p90':>8}" * 2)
    try:
        for label, call in calls.items():
            call(via, 0), call(direct, 0)  # warm: connections, token caches
            t: dict[str, list[float]] = {"via": [], "direct": []}
            for i in range(n):
                for name, c in clients.items():
                    def one(c: httpx.Client = c, i: int = i, call: Any = call) -> None:
                        assert call(c, i).status_code == 200
                    t[name].append(_timed(one))
            _row(label, t["via"], t["direct"])
        # openstacksdk: the catalog's network endpoint (neutron-server) vs taas-server.
        clouds = Path(lab.state["keystone"]["clouds_yaml"])
        config = OpenStackConfig(config_files=[str(clouds)])
        conns = {"via": connection.Connection(config=config.get_one("project-a")),
                 "direct": connection.Connection(config=config.get_one(
                     "project-a", network_endpoint_override=taas_url + "/v2.0"))}
        for label, call in {"sdk get_tap_service": lambda c: c.network.get_tap_service(ts_id),
                            "sdk tap_services() (list)":
                                lambda c: list(c.network.tap_services())}.items():
            for c in conns.values():
                call(c)
            t = {"via": [], "direct": []}
            for _ in range(n):
                for name, c in conns.items():
                    t[name].append(_timed(lambda c=c, call=call: call(c)))
            _row(label, t["via"], t["direct"])
        # The openstack CLI: a new process (login, catalog) per call.
        data = yaml.safe_load(clouds.read_text())
        data["clouds"]["direct"] = {**data["clouds"]["project-a"],
                                    "network_endpoint_override": taas_url + "/v2.0"}
        both = clouds.with_name("clouds-bench.yaml")
        both.write_text(yaml.safe_dump(data))
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("OS_")},
               "OS_CLIENT_CONFIG_FILE": str(both)}
        t = {"via": [], "direct": []}
        for _ in range(5):
            for name, cloud in (("via", "project-a"), ("direct", "direct")):
                def cli(cloud: str = cloud) -> None:
                    subprocess.run(["openstack", "--os-cloud", cloud, "tap", "service", "show",
                                    ts_id, "-f", "json"], env=env, check=True,
                                   capture_output=True, timeout=120)
                t[name].append(_timed(cli))
        _row("openstack tap service show", t["via"], t["direct"])
    finally:
        via.delete(f"/v2.0/taas/tap_services/{ts_id}")
        for c in clients.values():
            c.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="runs per case (default 20)")
    ap.add_argument("--interval", type=float, default=0.01, help="ping interval (s)")
    ap.add_argument("--tcp-bytes", type=int, default=20_000_000, help="bytes per transfer")
    ap.add_argument("--watch-underlay", type=float, default=0.0, metavar="S",
                    help="seconds of a remote tap flow with host3's underlay captured (0: skip)")
    ap.add_argument("--api", type=int, default=0, metavar="N",
                    help="TaaS calls through neutron-server vs directly, N each (0: skip)")
    ap.add_argument("--api-only", action="store_true", help="only the --api comparison")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (network namespaces, Open vSwitch)", file=sys.stderr)
        return 1
    print(f"machine: {machine()}", flush=True)
    t_up = time.monotonic()
    lab = up(SPEC, unique_name("nb"), autoclean=True)
    print(f"neutron lab up in {time.monotonic() - t_up:.1f} s "
          f"({lab.state['neutron']['timings']})", flush=True)
    srv = lab.state["server"]
    api = httpx.Client(base_url=srv["url"], headers={"X-Auth-Token": srv["token"]}, timeout=30)
    pings: list[subprocess.Popen[bytes]] = []
    project = lab.state["keystone"]["projects"]["project-a"]
    try:
        if args.api:
            api_paths(lab, args.api)
        if args.api_only:
            print(f"machine after: {machine()}")
            return 0
        vm = {v.name: v for v in lab.vms}
        r = api.post("/v2.0/taas/tap_services", json={"tap_service": {
            "project_id": project, "name": "bench", "port_id": vm["mon"].port_id}})
        ts_id = r.json()["tap_service"]["id"]
        wait(lambda: api.get(f"/v2.0/taas/tap_services/{ts_id}").json()["tap_service"]
             ["status"] == "ACTIVE", 20, 0.05)
        cases = {"local": "vm1", "remote": "vm2"}
        for src in cases.values():
            pings.append(lab.popen(src, ["ping", "-q", "-n", "-i", str(args.interval),
                                         vm["vm3"].ip], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL))
        results: dict[str, list[float]] = {c: [] for c in cases}
        with lab.capture("mon", bpf="icmp", settle=False) as cap:
            time.sleep(0.3)
            for i in range(args.runs):
                for case, src in cases.items():
                    v = one_run(api, cap.path, vm[src].ip, vm["vm3"].ip, vm[src].port_id, ts_id,
                                project)
                    if v is None:
                        print(f"run {i} {case}: no mirrored packet", flush=True)
                    else:
                        results[case].append(v * 1000)
        stop_all(pings)
        print(f"\n{args.runs} runs per case; sources ping every {args.interval * 1000:g} ms")
        print(f"{'case':<8}{'API call -> first mirrored packet':<36}{'p50':>8}{'p90':>8}"
              f"{'p99':>8}{'max':>8}")
        for case, vals in results.items():
            if vals:
                print(f"{case:<8}{'':<36}{pct(vals, 50):8.1f}{pct(vals, 90):8.1f}"
                      f"{pct(vals, 99):8.1f}{max(vals):8.1f}  (ms, n={len(vals)}, "
                      f"mean {statistics.mean(vals):.1f})")
        plain = [throughput(lab, args.tcp_bytes) for _ in range(3)]
        r = api.post("/v2.0/taas/tap_flows", json={"tap_flow": {
            "project_id": project, "source_port": vm["vm1"].port_id,
            "tap_service_id": ts_id, "direction": "BOTH"}})
        tf_id = r.json()["tap_flow"]["id"]
        wait(lambda: api.get(f"/v2.0/taas/tap_flows/{tf_id}").json()["tap_flow"]["status"]
             == "ACTIVE", 20, 0.05)
        tapped = [throughput(lab, args.tcp_bytes) for _ in range(3)]
        print(f"\nTCP vm1 (host1) -> vm2 (host2), {args.tcp_bytes / 1e6:g} MB per transfer, "
              "3 transfers each (MB/s):")
        print(f"  without a tap flow: median {statistics.median(plain):.1f} "
              f"({', '.join(f'{x:.1f}' for x in plain)})")
        print(f"  with a BOTH tap flow on vm1 (copies to mon, host1): median "
              f"{statistics.median(tapped):.1f} ({', '.join(f'{x:.1f}' for x in tapped)})")
        if args.watch_underlay > 0:
            api.delete(f"/v2.0/taas/tap_flows/{tf_id}")
            watch_underlay(lab, api, ts_id, args.watch_underlay)
        print(f"machine after: {machine()}")
    finally:
        stop_all(pings)
        api.close()
        lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
