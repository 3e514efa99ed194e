"""One taas-agent process per lab host, started and stopped by the lab."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from taas.lab.handle import LabHandle
from taas.lab.sh import cmdline, kill_pids

_REPO = str(Path(__file__).resolve().parents[2])
_STARTUP_GRACE = 0.2  # an agent with bad arguments or a broken import exits within this


def _agent_argv() -> list[str]:
    exe = shutil.which("taas-agent")
    return [exe] if exe else [sys.executable, "-c",
                              "import sys; from taas.agent.cli import main; sys.exit(main())"]


class AgentsMixin(LabHandle):
    def start_agents(self, server: str, token: str, hosts: Sequence[str] | None = None,
                     extra_args: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Start one taas-agent per host (root namespace; it reaches OVS through sockets)."""
        base = _agent_argv()
        agents = self.state.setdefault("agents", [])
        env = dict(os.environ)
        # The agents import this very checkout, whatever the caller's working directory.
        env["PYTHONPATH"] = _REPO + (os.pathsep + env["PYTHONPATH"]
                                     if env.get("PYTHONPATH") else "")
        started: list[subprocess.Popen[bytes]] = []
        for h in self.state["hosts"]:
            if hosts is not None and h["name"] not in hosts:
                continue
            logf = f"{h['run_dir']}/taas-agent.log"
            cmd = [*base, "--host", h["name"], "--server", server, "--token", token,
                   "--ovsdb", h["ovsdb"], "--ovs-rundir", h["run_dir"],
                   "--tunnel-ip", h["tunnel_ip"], "--log-file", logf, *extra_args]
            with open(logf, "ab") as out:
                p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True, env=env)
            agents.append({"host": h["name"], "pid": p.pid, "log": logf})
            started.append(p)
        self.save()
        # Catch an agent that cannot even start (bad arguments, import error) right here.
        time.sleep(_STARTUP_GRACE)
        dead = [(p, a) for p, a in zip(started, agents[len(agents) - len(started):], strict=True)
                if p.poll() is not None]
        if dead:
            p, a = dead[0]
            tail = Path(a["log"]).read_text(errors="replace")[-2000:]
            raise RuntimeError(f"taas-agent for {a['host']} exited rc={p.returncode}:\n{tail}")
        return agents

    def stop_agents(self, hosts: Sequence[str] | None = None) -> None:
        keep, stop = [], []
        for a in self.state.get("agents", []):
            (stop if hosts is None or a["host"] in hosts else keep).append(a)
        kill_pids([a["pid"] for a in stop if "agent" in cmdline(a["pid"])])
        self.state["agents"] = keep
        self.save()
