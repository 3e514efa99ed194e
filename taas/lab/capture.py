"""Packet captures inside lab namespaces: tcpdump to a pcap, parsed into raw frames.

`CaptureMixin` gives a lab `capture()` / `captures()`.

The pcap is parsed here (the format is tiny) rather than with scapy, whose import alone takes
about a second; `Capture.packets()` turns frames into scapy packets for tests that want them.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from taas.lab.handle import LabHandle


def parse_pcap(data: bytes) -> list[bytes]:
    """Raw frames of a classic pcap file (any byte order, us or ns timestamps)."""
    return [f for _, f in parse_pcap_records(data)]


def parse_pcap_records(data: bytes) -> list[tuple[float, bytes]]:
    """(timestamp in seconds, raw frame) of each record of a classic pcap file."""
    if len(data) < 24:
        return []
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError("not a pcap file")
    frac = 1e-9 if magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e-6
    records = []
    off = 24
    rec = struct.Struct(endian + "IIII")
    while off + 16 <= len(data):
        sec, sub, incl, _ = rec.unpack_from(data, off)
        off += 16
        if off + incl > len(data):  # a record still being written
            break
        records.append((sec + sub * frac, data[off:off + incl]))
        off += incl
    return records


_DROPPED = re.compile(r"(\d+) packets? dropped by kernel")


class Capture:
    """A running tcpdump in a namespace. Use through `Lab.capture()` / `Lab.captures()`.

    `frames` (raw bytes, in arrival order) is filled when the capture stops; while it runs,
    `wait_for()` / `read()` look at what has arrived so far.
    """

    def __init__(self, netns: str, iface: str, path: Path, bpf: str | None = None,
                 direction: str | None = None, snaplen: int = 0) -> None:
        self.netns = netns
        self.iface = iface
        self.path = path
        self.bpf = bpf
        self.direction = direction
        # Bytes kept per frame (0: all). In immediate mode the kernel ring has one slot per
        # snaplen-sized frame, so a small one avoids drops at high rates on a loaded machine.
        self.snaplen = snaplen
        self.frames: list[bytes] = []
        self.times: list[float] = []  # tcpdump's timestamp of each of `frames`
        self.dropped = 0  # frames the kernel dropped before tcpdump read them (known at stop)
        self.proc: subprocess.Popen[bytes] | None = None
        self._err = b""

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        # -Z root: tcpdump otherwise drops to user tcpdump and cannot write the pcap;
        # --immediate-mode -U: every frame reaches the file at once (no 1 s buffer timeout).
        cmd = ["ip", "netns", "exec", self.netns, "tcpdump", "-n", "-i", self.iface, "-s",
               str(self.snaplen),
               "-U", "--immediate-mode", "-Z", "root", "-w", str(self.path)]
        if self.direction:
            cmd += ["-Q", self.direction]
        if self.bpf:
            cmd += [self.bpf]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)

    def wait_listening(self, timeout: float = 10.0) -> None:
        """Block until tcpdump says it is listening (its socket is bound: nothing is missed)."""
        assert self.proc is not None and self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        deadline = time.monotonic() + timeout
        while b"listening on" not in self._err:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                raise TimeoutError(f"tcpdump on {self.netns}/{self.iface} did not start")
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 4096)
                if not chunk:
                    rc = self.proc.wait()
                    raise RuntimeError(f"tcpdump on {self.netns}/{self.iface} exited rc={rc}: "
                                       f"{self._err.decode(errors='replace').strip()}")
                self._err += chunk

    def _size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def settle(self, quiet: float = 0.15, max_wait: float = 2.0) -> None:
        """Wait until nothing new has arrived for `quiet` seconds (frames still in flight)."""
        settle_all([self], quiet, max_wait)

    def stop(self) -> list[bytes]:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc is not None and self.proc.stderr is not None:
            # tcpdump's exit summary: a count that is short because the capture itself
            # dropped frames must not pass for frames the switch did not deliver.
            with contextlib.suppress(OSError, ValueError):
                self._err += self.proc.stderr.read()
            self.proc.stderr.close()
            m = _DROPPED.search(self._err.decode(errors="replace"))
            self.dropped = int(m.group(1)) if m else 0
        try:
            records = parse_pcap_records(self.path.read_bytes())
        except (OSError, ValueError):
            records = list(zip(self.times, self.frames, strict=False))
        self.times = [t for t, _ in records]
        self.frames = [f for _, f in records]
        try:
            self.path.unlink()
        except OSError:
            pass
        return self.frames

    # -- reading -----------------------------------------------------------------------------
    def read(self) -> list[bytes]:
        """Frames captured so far."""
        try:
            return parse_pcap(self.path.read_bytes())
        except (OSError, ValueError):
            return list(self.frames)

    def wait_for(self, count: int = 1, timeout: float = 5.0,
                 match: Any = None) -> list[bytes]:
        """Poll until at least `count` frames (satisfying `match(frame)`, if given) arrived.

        Returns the matching frames so far (possibly fewer than `count` on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            got = [f for f in self.read() if match is None or match(f)]
            if len(got) >= count or time.monotonic() >= deadline:
                return got
            time.sleep(0.02)

    def packets(self) -> list[Any]:
        """`frames` as scapy Ether packets."""
        from scapy.layers.l2 import Ether

        return [Ether(f) for f in (self.frames or self.read())]

    def __len__(self) -> int:
        return len(self.frames)

    def __repr__(self) -> str:
        return f"<Capture {self.netns}/{self.iface} {len(self.frames)} frames>"


def settle_all(caps: Sequence[Capture], quiet: float = 0.15, max_wait: float = 2.0) -> None:
    """Wait until no capture has grown for `quiet` seconds: frames still crossing the
    userspace datapath get written before tcpdump is stopped."""
    deadline = time.monotonic() + max_wait
    last = [c._size() for c in caps]
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.03)
        now = [c._size() for c in caps]
        if now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since >= quiet:
            return


class CaptureMixin(LabHandle):
    @contextlib.contextmanager
    def capture(self, target: str, iface: str | None = None, bpf: str | None = None, *,
                direction: str | None = None, settle: bool = True) -> Iterator[Capture]:
        """tcpdump on `iface` (default: the VM's / collector's interface) of a VM, host,
        collector or namespace. Yields once tcpdump listens; on exit waits for in-flight
        frames (`settle`), stops, and fills `cap.frames` (raw frame bytes)."""
        with self.captures({target: (iface, bpf)}, direction=direction, settle=settle) as caps:
            yield caps[target]

    @contextlib.contextmanager
    def captures(self, targets: Sequence[str] | dict[str, Any], *,
                 direction: str | None = None, settle: bool = True, snaplen: int = 0
                 ) -> Iterator[dict[str, Capture]]:
        """Several captures started in parallel. `targets`: names (default interface) or a dict
        name -> iface | (iface, bpf). `snaplen`: bytes kept per frame (0: all). Yields
        {name: Capture}."""
        if not isinstance(targets, dict):
            targets = {t: None for t in targets}
        capdir = self.dir / "captures"
        capdir.mkdir(parents=True, exist_ok=True)
        caps: dict[str, Capture] = {}
        try:
            for t, spec in targets.items():
                iface, bpf = spec if isinstance(spec, tuple) else (spec, None)
                fd, path = tempfile.mkstemp(prefix="cap-", suffix=".pcap", dir=capdir)
                os.close(fd)
                c = Capture(self.netns_of(t), iface or self.default_iface(t), Path(path), bpf,
                            direction, snaplen)
                caps[t] = c
                c.start()
            for c in caps.values():
                c.wait_listening()
            yield caps
            if settle and caps:
                settle_all(list(caps.values()))
        finally:
            for c in caps.values():
                c.stop()
