"""Lab benchmark: time `lab up` and `lab down` with 2 and 4 hosts (median of a few runs).

Run: python -m bench.lab_bench [--runs N]   (as root; builds real labs, removes them)
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import statistics
import subprocess
import time

from taas.lab import Lab


def machine() -> dict[str, str]:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ovs = subprocess.run(["ovs-vswitchd", "--version"], capture_output=True, text=True)
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "kernel": platform.release(),
        "ovs": ovs.stdout.splitlines()[0] if ovs.stdout else "?",
        "python": platform.python_version(),
    }


def bench(hosts: int, runs: int) -> tuple[list[float], list[float], int]:
    ups, downs, vms = [], [], 0
    for _ in range(runs):
        name = f"b{secrets.token_hex(3)}"
        t0 = time.perf_counter()
        lab = Lab.up(None, name, hosts=hosts, autoclean=True)
        t1 = time.perf_counter()
        vms = len(lab.vms)
        lab.down()
        t2 = time.perf_counter()
        ups.append(t1 - t0)
        downs.append(t2 - t1)
    return ups, downs, vms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    m = machine()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in m.items()))
    print(f"{'hosts':>5} {'VMs':>4} {'up median':>10} {'down median':>12}  (runs: up / down, s)")
    for hosts in (2, 4):
        ups, downs, vms = bench(hosts, args.runs)
        up, down = statistics.median(ups), statistics.median(downs)
        print(f"{hosts:>5} {vms:>4} {up:>9.3f}s {down:>11.3f}s"
              f"  ({' '.join(f'{x:.2f}' for x in ups)} / {' '.join(f'{x:.2f}' for x in downs)})")


if __name__ == "__main__":
    main()
