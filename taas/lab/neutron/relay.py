"""A TCP relay between network namespaces, so that nothing is added to the root namespace.

The Neutron lab's control plane (RabbitMQ, PostgreSQL, neutron-server, taas-server) lives in
its own namespace. Tests and taas-agents (root namespace) reach neutron-server and taas-server,
and the neutron-openvswitch-agents (host namespaces) reach RabbitMQ, through this relay: a socket
keeps the namespace it was created in, so the process binds each listener inside its listen
namespace, then enters the target namespace, where every outgoing connection is made.

    python -m taas.lab.neutron.relay TARGET_NS LISTEN...   LISTEN = NS|-,ADDR,PORT,TO_PORT

PORT 0 picks a free port; the chosen ports are printed as one JSON line (list, in order).
The process stays in TARGET_NS, so removing that namespace's processes stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import socket
import sys

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


# The namespace the relay was started in (the root one); kept open to come back to it.
_HOME = os.open("/proc/self/ns/net", os.O_RDONLY)


def enter_netns(name: str | None) -> None:
    """Move this (single-threaded) process into namespace `name` (None: where it started)."""
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY) if name else _HOME
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {name}: {os.strerror(err)}")
    finally:
        if name:
            os.close(fd)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def _handler(to_port: int):  # type: ignore[no-untyped-def]
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            tr, tw = await asyncio.open_connection("127.0.0.1", to_port)
        except OSError:
            w.close()
            return
        await asyncio.gather(_pipe(r, tw), _pipe(tr, w))
    return handle


async def _serve(listeners: list[tuple[socket.socket, int]]) -> None:
    servers = [await asyncio.start_server(_handler(to), sock=s) for s, to in listeners]
    await asyncio.gather(*(s.serve_forever() for s in servers))


def main(argv: list[str]) -> int:
    target, specs = argv[0], argv[1:]
    listeners: list[tuple[socket.socket, int]] = []
    for spec in specs:
        ns, addr, port, to = spec.split(",")
        enter_netns(None if ns == "-" else ns)
        # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP, and
        # accepted ones inherit it. Without it, a response written in two parts (uvicorn:
        # headers, then body) waited for the client's delayed ACK: +40 ms on 1 call in 5.
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, int(port)))
        s.listen(128)
        s.setblocking(False)
        listeners.append((s, int(to)))
    enter_netns(target)
    print(json.dumps([s.getsockname()[1] for s, _ in listeners]), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(listeners))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
