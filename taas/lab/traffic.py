"""Traffic between the lab's VMs: ping, TCP transfers and raw frames."""

from __future__ import annotations

import ipaddress
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from taas.lab.handle import LabHandle
from taas.lab.scripts import script

_PING_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")


@dataclass
class PingResult:
    sent: int
    received: int
    output: str

    @property
    def ok(self) -> bool:
        return self.sent > 0 and self.received == self.sent

    def __bool__(self) -> bool:  # truthy only when every echo came back
        return self.ok


def _is_ip(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


class TrafficMixin(LabHandle):
    def ping(self, src_vm: str, dst: str, count: int = 3, *, interval: float = 0.05,
             timeout: float = 2.0) -> PingResult:
        """Ping from a VM; `dst` is an IP or a VM name. Truthy iff every echo came back."""
        dst_ip = dst if _is_ip(dst) else self.vm(dst).ip
        cp = self.exec(src_vm, ["ping", "-n", "-q", "-c", str(count), "-i", str(interval),
                                "-W", str(timeout), dst_ip],
                       check=False, timeout=count * (interval + timeout) + 10)
        m = _PING_SUMMARY.search(cp.stdout)
        sent, recv = (int(m.group(1)), int(m.group(2))) if m else (count, 0)
        return PingResult(sent, recv, cp.stdout + cp.stderr)

    def send_frames(self, target: str, frames: Sequence[bytes | Any], iface: str | None = None,
                    *, interval: float = 0.0) -> None:
        """Inject raw Ethernet frames (bytes or scapy packets) on a VM's interface."""
        iface = iface or self.default_iface(target)
        hexes = "\n".join(bytes(f).hex() for f in frames)
        self.exec(target, [sys.executable, script("send_frames"), iface, str(interval)],
                  input=hexes)

    def tcp_transfer(self, src_vm: str, dst_vm: str, nbytes: int = 1_000_000, *,
                     port: int = 5201, timeout: float = 20) -> int:
        """Send `nbytes` over TCP from src_vm to dst_vm; return the bytes the server received."""
        dst_ip = self.vm(dst_vm).ip
        srv = self.popen(dst_vm, [sys.executable, script("tcp_sink"), dst_ip, str(port),
                                  str(timeout)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        try:
            assert srv.stdout is not None
            ready = srv.stdout.readline().strip()
            if ready != "ready":
                err = srv.stderr.read() if srv.stderr else ""
                raise RuntimeError(f"TCP server did not start: {err}")
            self.exec(src_vm, [sys.executable, script("tcp_source"), dst_ip, str(port),
                               str(nbytes), str(timeout)], check=False, timeout=timeout + 5)
            out, _ = srv.communicate(timeout=timeout + 5)
            return int(out.strip() or 0)
        finally:
            if srv.poll() is None:
                srv.kill()
                srv.wait()
