"""Send N bytes over TCP, half-close, and wait for the peer to close.

usage: tcp_source.py IP PORT NBYTES TIMEOUT
"""

import socket
import sys


def main() -> None:
    ip, port, n, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    s = socket.create_connection((ip, port), timeout=timeout)
    buf = b"x" * 65536
    while n > 0:
        n -= s.send(buf[:min(n, len(buf))])
    s.shutdown(socket.SHUT_WR)
    s.recv(1)
    s.close()


if __name__ == "__main__":
    main()
