"""Scale benchmark: N simulated taas agents against a real taas-server.

    python -m bench.scale_bench [--agents 100 1000] [--db sqlite|postgres] [--replicas 1 3]
                                [--changes 20] [--idle 120] [--server-src DIR]
                                [--real-agent | --no-real-agent] [--profile FILE]

Each simulated agent behaves like taas-agent on the wire (taas/agent/agent.py, client.py):
registers, heartbeats every 10 s (skipped, but every 2 minutes, while its long-poll waits on a
server that counts that as alive), sends its port set (skipped while the server's digest matches
it), long-polls its desired state (?revision=, 55 s), and reports after each new revision
(skipped while the server's digest matches). All agents run in this one process (asyncio +
httpx, two connections each), whose own CPU is printed: on one machine it competes with the
servers. The server is a real `taas-server` subprocess (several on one PostgreSQL with
--replicas; agents are spread over them round-robin; several --replicas values run one after
the other, to compare). --server-src runs the server from another source tree (e.g. an older
commit: `git archive be100a8 taas | tar -x -C DIR`) to compare protocols with the same agents.

Printed per N: the machine and its load; the server's idle CPU (share of one core) and RSS;
requests per second at idle (per replica too); PostgreSQL's CPU; a change's latency to its
involved hosts (p50/p99: from the tenant's POST to the involved agents holding the new
resource); agents woken per change (involved / uninvolved: long-polls that answered with a new
revision); tenant GET latency while the agents are connected. Then one real taas-agent's idle
CPU and RSS on a one-host OVS lab (bench/real_agent.py; on by default when root with OVS).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import platform
import secrets
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from taas.agent.client import FULL_HEARTBEAT
from taas.common.desired_state import HostReport, ResourceStatus, ports_digest
from taas.testing.server import free_port

HEARTBEAT = 10.0
POLL = 55.0  # as taas-agent asks (AgentConfig.poll_timeout)
TOKENS = {"admin": ("admin-project", ["admin"]), "service": ("service-project", ["service"]),
          "member": ("project-a", ["member"])}


# ---- the server(s) ----------------------------------------------------------------------------

class Server:
    """A taas-server subprocess from `src` (this tree by default)."""

    def __init__(self, workdir: Path, db_url: str, src: Path, tokens: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        tokens_file = workdir / "tokens.json"
        tokens_file.write_text(json.dumps({"tokens": {
            tok: {"project_id": TOKENS[name][0], "roles": TOKENS[name][1]}
            for name, tok in tokens.items()}}))
        config = workdir / f"server-{self.port}.json"
        settings = {"tokens_file": str(tokens_file), "db_url": db_url}
        if (src / "taas/server/services/quotas.py").exists():
            # --changes tap services in one project: more than a project's default quota.
            settings |= {"quota_tap_service": -1, "quota_tap_flow": -1}
        config.write_text(json.dumps(settings))
        self.log = open(workdir / f"server-{self.port}.log", "ab")  # noqa: SIM115
        env = {**os.environ, "PYTHONPATH": str(src)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "taas.server.cli", "--config", str(config), "--host",
             "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=workdir)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"taas-server exited with {self.proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError("taas-server did not start")

    def cpu_seconds(self) -> float:
        return process_cpu(self.proc.pid)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


# ---- the simulated agents -----------------------------------------------------------------------

@dataclass
class Counters:
    requests: int = 0
    errors: int = 0
    by_server: collections.Counter[str] = field(default_factory=collections.Counter)
    # (monotonic time, host, revision, resource ids) of each long-poll answer with a new revision
    woken: list[tuple[float, str, int, frozenset[str]]] = field(default_factory=list)


class SimAgent:
    def __init__(self, index: int, url: str, token: str, port_id: str, c: Counters) -> None:
        self.host = f"scale-{index:05d}"
        self.tunnel_ip = f"10.{100 + index // 65536}.{index // 256 % 256}.{index % 256}"
        self.url, self.port_id, self.c = url, port_id, c
        self.headers = {"X-Auth-Token": token}
        self.revision: int | None = None
        self.state: dict[str, Any] = {}
        self.ports_digest: str | None = None
        self.report_digest: str | None = None
        self.report_due = asyncio.Event()
        self.ready = asyncio.Event()
        self.watching = False  # a long-poll is waiting on the server
        self.keeps_alive = False  # the server counts a waiting long-poll as a heartbeat
        self.beat_at = 0.0

    async def call(self, http: httpx.AsyncClient, method: str, path: str, **kw: Any) -> Any:
        self.c.requests += 1
        self.c.by_server[self.url] += 1
        r = await http.request(method, f"{self.url}/v2.0/taas-agents/{self.host}{path}",
                               headers=self.headers, **kw)
        r.raise_for_status()
        return r.json()

    async def uplink(self, http: httpx.AsyncClient, delay: float) -> None:
        await asyncio.sleep(delay)
        failures = 0
        next_beat = 0.0
        while True:
            try:
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + HEARTBEAT
                    if not (self.keeps_alive and self.watching
                            and time.monotonic() - self.beat_at < FULL_HEARTBEAT):
                        agent = (await self.call(http, "PUT", "", json={
                            "agent": {"tunnel_ip": self.tunnel_ip}}))["agent"]
                        self.ports_digest = agent.get("ports_digest")
                        self.report_digest = agent.get("report_digest")
                        self.keeps_alive = bool(agent.get("watch_keeps_alive"))
                        self.beat_at = time.monotonic()
                    if ports_digest([self.port_id]) != self.ports_digest:
                        body = await self.call(http, "PUT", "/ports", json={"ports": [
                            {"port_id": self.port_id, "ofport": 1, "local_vlan": 1,
                             "mac": "fa:16:3e:00:00:01", "name": "tap0"}]})
                        self.ports_digest = body.get("ports_digest")
                    self.ready.set()
                    self.report_due.set()  # taas-agent re-sends its report at each heartbeat
                if self.report_due.is_set() and self.revision is not None:
                    self.report_due.clear()
                    report = self.report()
                    if report.digest() != self.report_digest:
                        await self.call(http, "PUT", "/report", json={"report": report.to_dict()})
                        self.report_digest = report.digest()
                failures = 0
            except (httpx.HTTPError, ValueError, KeyError):
                failures += 1
                self.c.errors += 1
                next_beat = 0.0  # retry the whole heartbeat
                await asyncio.sleep(min(30.0, 0.2 * 2 ** failures) * (0.5 + secrets.randbelow(
                    1000) / 2000))
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.report_due.wait(),
                                       max(0.0, next_beat - time.monotonic()))

    def report(self) -> HostReport:
        res = [ResourceStatus(kind, r["id"], "ACTIVE")  # type: ignore[arg-type]
               for kind in ("tap_service", "tap_flow", "tap_mirror")
               for r in self.state.get(kind + "s", [])]
        ids = tuple(sorted({s["taas_id"] for s in self.state.get("tap_services", [])}))
        return HostReport(self.host, self.revision or 0, tuple(res), ids)

    async def watch(self, http: httpx.AsyncClient) -> None:
        await self.ready.wait()
        failures = 0
        while True:
            params: dict[str, Any] = {"timeout": int(POLL)}
            if self.revision is not None:
                params["revision"] = self.revision
            self.watching = self.revision is not None
            try:
                body = await self.call(http, "GET", "/desired-state", params=params,
                                       timeout=POLL + 30)
            except (httpx.HTTPError, ValueError):
                self.watching = False
                failures += 1
                self.c.errors += 1
                await asyncio.sleep(min(30.0, 0.2 * 2 ** failures))
                continue
            failures = 0
            self.watching = False
            if "ports_digest" in body:
                self.ports_digest = body["ports_digest"]
                self.report_digest = body["report_digest"]
            state = body["desired_state"]
            if state["revision"] != self.revision:
                ids = frozenset(r["id"] for k in ("tap_services", "tap_flows", "tap_mirrors")
                                for r in state.get(k, []))
                if self.revision is not None:
                    self.c.woken.append((time.monotonic(), self.host, state["revision"], ids))
                self.revision, self.state = state["revision"], state
                self.report_due.set()


# ---- the run ------------------------------------------------------------------------------------

def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def setup_ports(url: str, tokens: dict[str, str], n: int) -> list[str]:
    admin = {"X-Auth-Token": tokens["admin"]}
    async with httpx.AsyncClient(base_url=url, headers=admin, timeout=60) as c:
        net = (await c.post("/v2.0/networks", json={"network": {"project_id": "project-a"}}))
        net_id = net.json()["network"]["id"]
        sem = asyncio.Semaphore(8)

        async def one(i: int) -> str:
            async with sem:
                r = await c.post("/v2.0/ports", json={"port": {
                    "network_id": net_id, "project_id": "project-a", "name": f"scale-{i}"}})
                r.raise_for_status()
                return str(r.json()["port"]["id"])

        return list(await asyncio.gather(*(one(i) for i in range(n))))


def process_cpu(pid: int) -> float:
    """utime+stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pg_cpu(data_dir: Path | None) -> float:
    """CPU seconds of a PostgreSQL cluster: its postmaster and the backends it forked."""
    if data_dir is None:
        return 0.0
    master = int((data_dir / "postmaster.pid").read_text().split()[0])
    total = process_cpu(master)
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == master:
                    total += process_cpu(int(proc.name))
    return total


async def run_one(n: int, urls: list[str], servers: list[Server], tokens: dict[str, str],
                  args: argparse.Namespace, pg_data: Path | None) -> dict[str, Any]:
    out: dict[str, Any] = {"agents": n}
    c = Counters()
    port_ids = await setup_ports(urls[0], tokens, n)
    # One small client per agent and direction, as each taas-agent has: httpx scans its whole
    # pool on every request, so one shared pool of 2,000 connections would bench httpx.
    # One TLS context for all (unused on http://, but httpx builds one per client, loading
    # the CA store each time: 3,000 agents spent minutes and gigabytes on them).
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=60)
    tls = ssl.create_default_context()
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(
            httpx.AsyncClient(limits=limits, timeout=t, verify=tls))
            for _ in range(n) for t in (30, POLL + 30)]
        agents = [SimAgent(i, urls[i % len(urls)], tokens["service"], port_ids[i], c)
                  for i in range(n)]
        ramp = max(1.0, n / 200)  # agents start over this many seconds, like a rolling start
        tasks = [asyncio.create_task(a.uplink(clients[2 * i], ramp * i / n)) for i, a in
                 enumerate(agents)]
        tasks += [asyncio.create_task(a.watch(clients[2 * i + 1])) for i, a in
                  enumerate(agents)]
        t0 = time.monotonic()
        while any(a.revision is None for a in agents) and time.monotonic() - t0 < 120 + ramp:
            await asyncio.sleep(0.5)
        out["start-up (all agents registered and holding a state)"] = \
            f"{time.monotonic() - t0:.1f} s"
        await asyncio.sleep(HEARTBEAT + 2)  # the start-up traffic settles

        # Idle: CPU, RSS, requests/s, and tenant GETs while connected.
        member = {"X-Auth-Token": tokens["member"]}
        gets: list[float] = []
        profiler = None
        if args.profile:  # py-spy over the idle window of the first server
            profiler = subprocess.Popen(
                ["py-spy", "record", "-p", str(servers[0].proc.pid), "-d", str(int(args.idle)),
                 "-r", "100", "-f", "raw", "-o", str(args.profile)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu0 = [s.cpu_seconds() for s in servers]
        own0, pg0 = process_cpu(os.getpid()), pg_cpu(pg_data)
        req0, by0, t_idle = c.requests, c.by_server.copy(), time.monotonic()

        def tenant_gets() -> None:
            # In a thread of its own: the figure is the server's, not this event loop's delay.
            with httpx.Client(headers=member, timeout=120) as tenant:
                while time.monotonic() - t_idle < args.idle:
                    t = time.monotonic()
                    r = tenant.get(f"{urls[0]}/v2.0/taas/tap_services", params={"limit": 50})
                    gets.append(time.monotonic() - t)
                    r.raise_for_status()
                    time.sleep(0.5)

        lags: list[float] = []

        async def loop_lag() -> None:
            # How late this process's event loop runs a 0.1 s timer: the simulated agents'
            # own saturation (their requests wait on it, not on the server).
            while True:
                t = time.monotonic()
                await asyncio.sleep(0.1)
                lags.append(time.monotonic() - t - 0.1)

        lagger = asyncio.create_task(loop_lag())
        await asyncio.to_thread(tenant_gets)
        lagger.cancel()
        span = time.monotonic() - t_idle
        if profiler is not None:
            profiler.wait()
        cpu = [(s.cpu_seconds() - c0) / span for s, c0 in zip(servers, cpu0, strict=True)]
        out["idle server CPU (share of one core, per replica)"] = \
            " + ".join(f"{x * 100:.1f} %" for x in cpu)
        out["server RSS (per replica)"] = " + ".join(f"{s.rss_mb():.0f} MB" for s in servers)
        out["agent requests/s at idle (all replicas)"] = f"{(c.requests - req0) / span:.1f}"
        if len(servers) > 1:
            spread = collections.Counter(a.url for a in agents)
            out["agents per replica; their requests/s at idle"] = " + ".join(
                f"{spread[u]} ({(c.by_server[u] - by0[u]) / span:.1f}/s)" for u in urls)
        if pg_data is not None:
            out["PostgreSQL CPU at idle (all its processes)"] = \
                f"{(pg_cpu(pg_data) - pg0) / span * 100:.1f} %"
        out["simulated agents' event loop lag at idle, p99 / max"] = \
            f"{pct(lags, 0.99) * 1000:.0f} / {max(lags, default=0) * 1000:.0f} ms"
        out["simulated agents' own CPU at idle (this process)"] = \
            f"{(process_cpu(os.getpid()) - own0) / span * 100:.1f} % of one core"
        out["tenant GET p50 / p99 while connected (idle)"] = \
            f"{pct(gets, 0.5) * 1000:.1f} / {pct(gets, 0.99) * 1000:.1f} ms"

        # Changes: a tap service on host i's port, then a tap flow from host j's port to it.
        lat: list[float] = []
        woken_in: list[int] = []
        woken_out: list[int] = []
        missed = 0

        async def change(tenant: httpx.AsyncClient, path: str, body: dict[str, Any],
                         involved: set[int]) -> str:
            nonlocal missed
            mark = len(c.woken)
            t = time.monotonic()
            r = await tenant.post(f"{urls[0]}/v2.0/taas/{path}s", json={path: body})
            r.raise_for_status()
            rid = str(r.json()[path]["id"])
            hosts = {agents[x].host for x in involved}
            got: dict[str, float] = {}
            while len(got) < len(hosts) and time.monotonic() < t + 10:
                for when, h, _rev, ids in c.woken[mark:]:
                    if h in hosts and rid in ids and h not in got:
                        got[h] = when - t
                await asyncio.sleep(0.005)
            missed += len(hosts) - len(got)
            lat.extend(got.values())
            await asyncio.sleep(1.0)  # late wake-ups of uninvolved agents count too
            hit = {h for _w, h, _r, _i in c.woken[mark:]}
            woken_in.append(len(hit & hosts))
            woken_out.append(len(hit - hosts))
            return rid

        own0, t_changes = process_cpu(os.getpid()), time.monotonic()
        async with httpx.AsyncClient(headers=member, timeout=60) as tenant:
            for k in range(args.changes):
                i, j = (7 * k) % n, (7 * k + n // 2 + 1) % n
                svc = await change(tenant, "tap_service", {"port_id": port_ids[i]}, {i})
                await change(tenant, "tap_flow", {"tap_service_id": svc, "direction": "BOTH",
                                                  "source_port": port_ids[j]}, {i, j})
        out["change -> involved hosts p50 / p99"] = \
            f"{pct(lat, 0.5) * 1000:.0f} / {pct(lat, 0.99) * 1000:.0f} ms" + \
            (f" ({missed} of {len(lat) + missed} deliveries missed the 10 s bound)"
             if missed else "")
        out["agents woken per change (involved / uninvolved), mean"] = \
            f"{statistics.mean(woken_in):.1f} / {statistics.mean(woken_out):.1f}"
        out["simulated agents' own CPU during the changes"] = \
            f"{(process_cpu(os.getpid()) - own0) / (time.monotonic() - t_changes) * 100:.1f} %" \
            " of one core"
        out["agent-side errors (timeouts, resets)"] = str(c.errors)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return out


def machine() -> str:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def load() -> str:
    return "load avg " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_agents(n: int, replicas: int, args: argparse.Namespace) -> dict[str, Any]:
    """One run: fresh database and server(s), n simulated agents."""
    workdir = Path(tempfile.mkdtemp(prefix="taas-scale-"))
    tokens = {name: f"{name}-{secrets.token_hex(8)}" for name in TOKENS}
    servers: list[Server] = []
    with contextlib.ExitStack() as stack:
        pg_data = None
        if args.db == "postgres":
            from taas.testing.postgres import create_database, postgres_cluster

            cluster = stack.enter_context(postgres_cluster(dbname="taas_scale"))
            db_url = create_database(cluster.url, f"taas_scale_{secrets.token_hex(4)}")
            pg_data = cluster.data
        else:
            db_url = f"sqlite:///{workdir / 'taas.sqlite'}"
        try:
            for _ in range(replicas):
                servers.append(Server(workdir, db_url, args.server_src, tokens))
            return asyncio.run(run_one(n, [s.url for s in servers], servers, tokens, args,
                                       pg_data))
        finally:
            for s in servers:
                s.stop()
            shutil.rmtree(workdir, ignore_errors=True)


def run_real_agent(args: argparse.Namespace) -> dict[str, str]:
    """One real taas-agent (bench/real_agent.py) against a server of its own."""
    from bench import real_agent

    workdir = Path(tempfile.mkdtemp(prefix="taas-scale-"))
    tokens = {name: f"{name}-{secrets.token_hex(8)}" for name in TOKENS}
    server = Server(workdir, f"sqlite:///{workdir / 'taas.sqlite'}", args.server_src, tokens)
    try:
        return real_agent.measure(server.url, tokens, args.real_agent_window)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def show(title: str, result: dict[str, Any]) -> None:
    print(f"\n== {title} ({load()}) ==", flush=True)
    for key, value in result.items():
        print(f"  {key:58} {value}", flush=True)


def main(argv: list[str] | None = None) -> int:
    from bench import real_agent

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, nargs="+", default=[100, 1000])
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--replicas", type=int, nargs="+", default=[1],
                   help="servers on one PostgreSQL (several values: one run each, to compare)")
    p.add_argument("--changes", type=int, default=20, help="tap service + flow pairs")
    p.add_argument("--idle", type=float, default=120.0,
                   help="idle window (s): two long-poll periods, one full heartbeat period (agents"
                   " started together time out and beat together)")
    p.add_argument("--profile", type=Path, help="py-spy raw profile of the idle server here")
    p.add_argument("--server-src", type=Path, default=Path(__file__).resolve().parents[1],
                   help="source tree the server runs from")
    why_not = real_agent.unavailable()
    p.add_argument("--real-agent", action=argparse.BooleanOptionalAction,
                   default=why_not is None,
                   help="also measure one real taas-agent on a one-host OVS lab (default: on"
                   " when root with OVS installed)")
    p.add_argument("--real-agent-window", type=float, default=65.0,
                   help="idle window of the real agent (s)")
    args = p.parse_args(argv)
    if max(args.replicas) > 1 and args.db != "postgres":
        p.error("--replicas needs --db postgres")
    if args.real_agent and why_not:
        p.error(f"--real-agent {why_not}")
    print(f"machine: {machine()}; {load()} at start")
    print(f"server from {args.server_src}, db {args.db}")
    for n in args.agents:
        for replicas in args.replicas:
            show(f"{n} agents, {replicas} replica(s)", run_agents(n, replicas, args))
    if args.real_agent:
        show("one real taas-agent, idle (its cost on every hypervisor)", run_real_agent(args))
    else:
        print(f"\none real taas-agent: not measured ({why_not or 'left out (--no-real-agent)'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
