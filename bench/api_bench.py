"""API benchmark: tap flow create rate and list latency of a real taas-server, SQLite vs PostgreSQL.

    python -m bench.api_bench [--quick] [--db sqlite|postgres ...]

For each database a real `taas-server` process is started (taas.testing.server.run_server; the
PostgreSQL cluster by taas.testing.postgres) and driven over HTTP on loopback with httpx:

1. populate N tap flows (10,000; 2,000 with --quick) by bulk create, 500 per request;
2. list latency of GET /v2.0/taas/tap_flows: the full list, `?limit=100`, and a filter on one
   tap service;
3. tap flow creates, one per request: sequential, then 8 concurrent clients (threads, one
   connection each).

Creates go to fresh (source port, tap service) pairs so that none is refused as a duplicate.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from taas.cli.client import Client, TaasError

PROJECT = "project-a"
BULK_CHUNK = 500


@dataclass
class Scale:
    flows: int  # tap flows in the database while listing
    sequential: int  # creates by one client
    concurrent_clients: int
    per_client: int  # creates by each concurrent client
    list_samples: int  # requests per list variant
    services: int = 50  # tap services the flows are spread over


FULL = Scale(flows=10_000, sequential=1_000, concurrent_clients=8, per_client=1_000,
             list_samples=21)
QUICK = Scale(flows=2_000, sequential=200, concurrent_clients=8, per_client=100, list_samples=7)


@dataclass
class Results:
    db: str
    values: dict[str, float] = field(default_factory=dict)


def machine() -> list[tuple[str, str]]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return [
        ("CPU", cpu),
        ("cores", f"{os.cpu_count()} (load avg {os.getloadavg()[0]:.2f} at start)"),
        ("memory", mem),
        ("kernel", f"{platform.system()} {platform.release()}"),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("httpx", httpx.__version__),
    ]


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of the samples."""
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class Fixture:
    """Inventory for the run: one network, destination ports, tap services, source ports."""

    def __init__(self, admin: Client, member: Client, scale: Scale) -> None:
        self.admin = admin
        self.member = member
        self.scale = scale
        self._port_no = itertools.count()
        self._bulk_ports = True
        net = admin.create("network", {"name": "bench-net", "project_id": PROJECT,
                                       "provider:segmentation_id": 2001})
        self.network_id = str(net["id"])
        dests = self.make_ports("bench-dst", scale.services)
        self.services = [str(s["id"]) for s in member.bulk_create(
            "tap_service", [{"port_id": p, "name": f"bench-ts-{i}"}
                            for i, p in enumerate(dests)])]
        self._next = 0

    def make_ports(self, prefix: str, count: int) -> list[str]:
        items = [{"name": f"{prefix}-{next(self._port_no)}", "network_id": self.network_id,
                  "project_id": PROJECT} for _ in range(count)]
        ids: list[str] = []
        if self._bulk_ports:
            try:
                for start in range(0, len(items), BULK_CHUNK):
                    chunk = items[start:start + BULK_CHUNK]
                    ids.extend(str(p["id"]) for p in self.admin.bulk_create("port", chunk))
                return ids
            except TaasError as exc:
                if exc.status != 400 or ids:
                    raise
                self._bulk_ports = False  # the inventory takes ports one at a time
        return [str(self.admin.create("port", item)["id"]) for item in items]

    def flow_bodies(self, count: int) -> list[dict[str, Any]]:
        """Bodies for `count` new flows: fresh source ports, each feeding every service."""
        per_port = len(self.services)
        sources = self.make_ports("bench-src", -(-count // per_port))
        bodies = []
        for i in range(count):
            bodies.append({"source_port": sources[i // per_port],
                           "tap_service_id": self.services[i % per_port],
                           "direction": ("IN", "OUT", "BOTH")[i % 3],
                           "name": f"bench-flow-{self._next + i}"})
        self._next += count
        return bodies


def populate(fx: Fixture, count: int) -> float:
    """Bulk-create `count` tap flows; returns flows per second."""
    bodies = fx.flow_bodies(count)
    t0 = time.perf_counter()
    for start in range(0, count, BULK_CHUNK):
        fx.member.bulk_create("tap_flow", bodies[start:start + BULK_CHUNK])
    return count / (time.perf_counter() - t0)


def list_latency(client: Client, params: dict[str, Any] | None, samples: int,
                 expect: int) -> list[float]:
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        body = client.request("GET", "/v2.0/taas/tap_flows", params=params)
        times.append(time.perf_counter() - t0)
        got = len(body["tap_flows"])
        if got != expect:
            raise SystemExit(f"bench: GET tap_flows {params} returned {got} flows, "
                             f"expected {expect}")
    return times


def create_sequential(client: Client, bodies: list[dict[str, Any]]) -> tuple[float, list[float]]:
    lat = []
    t0 = time.perf_counter()
    for b in bodies:
        t1 = time.perf_counter()
        client.create("tap_flow", b)
        lat.append(time.perf_counter() - t1)
    return len(bodies) / (time.perf_counter() - t0), lat


def create_concurrent(url: str, token: str, bodies: list[dict[str, Any]],
                      clients: int) -> tuple[float, list[float]]:
    shares = [bodies[i::clients] for i in range(clients)]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []
    start = threading.Barrier(clients + 1)

    def worker(i: int) -> None:
        with Client(url, token) as c:
            start.wait()
            try:
                for b in shares[i]:
                    t1 = time.perf_counter()
                    c.create("tap_flow", b)
                    latencies[i].append(time.perf_counter() - t1)
            except BaseException as exc:  # reported after the join
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"bench: concurrent create failed: {errors[0]}")
    return len(bodies) / elapsed, [x for lat in latencies for x in lat]


@contextlib.contextmanager
def database(kind: str) -> Iterator[str | None]:
    if kind == "sqlite":
        yield None  # run_server's own temporary SQLite file
        return
    from taas.testing.postgres import run_postgres

    with run_postgres() as url:
        yield url


def run_one(kind: str, scale: Scale, log: Callable[[str], None]) -> Results:
    from taas.testing.server import run_server

    res = Results(kind)
    v = res.values
    with database(kind) as db_url, run_server(db_url=db_url) as srv:
        admin = Client(srv.url, srv.tokens["admin"], timeout=120)
        member = Client(srv.url, srv.tokens["a-member"], timeout=120)
        fx = Fixture(admin, member, scale)
        log(f"[{kind}] populating {scale.flows} tap flows (bulk, {BULK_CHUNK} per request)")
        v["bulk create (flows/s)"] = populate(fx, scale.flows)

        log(f"[{kind}] list latency, {scale.list_samples} samples each")
        member.request("GET", "/v2.0/taas/tap_flows")  # warm-up
        per_service = scale.flows // len(fx.services)
        for label, params, expect in (
            (f"list all {scale.flows}", None, scale.flows),
            ("list ?limit=100", {"limit": 100}, 100),
            (f"list ?tap_service_id= ({per_service})", {"tap_service_id": fx.services[0]},
             per_service),
        ):
            lat = list_latency(member, params, scale.list_samples, expect)
            v[f"{label} p50 (ms)"] = 1000 * statistics.median(lat)
            v[f"{label} p99 (ms)"] = 1000 * percentile(lat, 99)

        log(f"[{kind}] {scale.sequential} sequential creates")
        rate, lat = create_sequential(member, fx.flow_bodies(scale.sequential))
        v["create, 1 client (flows/s)"] = rate
        v["create, 1 client p50 (ms)"] = 1000 * statistics.median(lat)
        v["create, 1 client p99 (ms)"] = 1000 * percentile(lat, 99)

        n = scale.concurrent_clients
        log(f"[{kind}] {n} x {scale.per_client} concurrent creates")
        rate, lat = create_concurrent(srv.url, srv.tokens["a-member"],
                                      fx.flow_bodies(n * scale.per_client), n)
        v[f"create, {n} clients (flows/s)"] = rate
        v[f"create, {n} clients p50 (ms)"] = 1000 * statistics.median(lat)
        v[f"create, {n} clients p99 (ms)"] = 1000 * percentile(lat, 99)

        total = len(member.list("tap_flow", fields="id"))
        expected = scale.flows + scale.sequential + n * scale.per_client
        if total != expected:
            raise SystemExit(f"bench: {total} tap flows in the end, expected {expected}")
        admin.close()
        member.close()
    return res


def print_table(results: list[Results]) -> None:
    names = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
    metrics: list[str] = []
    for r in results:
        metrics.extend(m for m in r.values if m not in metrics)
    width = max(len(m) for m in metrics)
    head = f"{'':<{width}}" + "".join(f"{names.get(r.db, r.db):>14}" for r in results)
    print(head)
    print("-" * len(head))
    for m in metrics:
        cells = "".join(f"{r.values[m]:>14,.1f}" if m in r.values else f"{'-':>14}"
                        for r in results)
        print(f"{m:<{width}}{cells}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.api_bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller run (2,000 flows)")
    ap.add_argument("--db", action="append", choices=["sqlite", "postgres"],
                    help="database(s) to run (default: both)")
    args = ap.parse_args(argv)
    scale = QUICK if args.quick else FULL
    dbs = args.db or ["sqlite", "postgres"]

    print("taas API benchmark" + (" (--quick)" if args.quick else ""))
    for k, val in machine():
        print(f"  {k:<8} {val}")
    print(f"  scale    {scale.flows} flows over {scale.services} tap services listed; creates "
          f"{scale.sequential} sequential, {scale.concurrent_clients} x {scale.per_client} "
          f"concurrent; {scale.list_samples} samples per list (p50 = median)")
    print(flush=True)

    def log(msg: str) -> None:
        print("  " + msg, file=sys.stderr, flush=True)

    results = [run_one(db, scale, log) for db in dbs]
    print()
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
