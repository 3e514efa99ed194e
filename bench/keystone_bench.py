"""Keystone benchmark: what auth_strategy keystone costs per request, cached and uncached.

    python -m bench.keystone_bench [--requests N]

Starts a real Keystone (Debian's package under uwsgi, taas.testing.keystone) and two real
taas-servers against it: one with keystone_cache_ttl=60 (the default) and one with 0 (every
request validated by Keystone). Each answers N sequential `GET /v2.0/taas/tap_services` with a
member's token; a tokens-file server gives the baseline without Keystone. Prints latency
percentiles and the machine with its load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from bench.api_bench import machine
from taas.testing.keystone import populate, run_keystone, run_keystone_server
from taas.testing.server import ServerProcess, run_server

PATH = "/v2.0/taas/tap_services"


def measure(srv: ServerProcess, token: str, n: int) -> list[float]:
    out = []
    with httpx.Client(base_url=srv.url, headers={"X-Auth-Token": token}, timeout=60) as c:
        assert c.get(PATH).status_code == 200  # warm: connection, first validation
        for _ in range(n):
            t = time.perf_counter()
            r = c.get(PATH)
            out.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200, r.text
    return out


def row(name: str, ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=100)
    return f"| {name} | {len(ms)} | {statistics.median(ms):.1f} | {q[89]:.1f} | {q[98]:.1f} |"


@contextmanager
def servers() -> Iterator[dict[str, tuple[ServerProcess, str]]]:
    with run_keystone() as ks:
        populate(ks)
        with run_keystone_server(ks, keystone_cache_ttl=60) as cached, \
                run_keystone_server(ks, keystone_cache_ttl=0) as uncached, \
                run_server() as tokens_file:
            yield {
                "tokens file (no Keystone)": (tokens_file, tokens_file.tokens["a-member"]),
                "keystone, cache ttl 60 s (default)": (cached, cached.tokens["a-member"]),
                "keystone, cache ttl 0 (every request validated)":
                    (uncached, uncached.tokens["a-member"]),
            }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=300)
    args = p.parse_args()
    for key, value in machine():
        print(f"{key}: {value}")
    with servers() as cases:
        print(f"\nload avg before measuring: {os.getloadavg()[0]:.2f}\n")
        print("| server | requests | p50 ms | p90 ms | p99 ms |\n|---|---|---|---|---|")
        for name, (srv, token) in cases.items():
            print(row(name, measure(srv, token, args.requests)), flush=True)
    print(f"\nload avg after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
