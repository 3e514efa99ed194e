"""Accept one TCP connection and count the bytes received until the peer closes.

Prints "ready" once listening, then the byte count. usage: tcp_sink.py IP PORT TIMEOUT
"""

import socket
import sys


def main() -> None:
    ip, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((ip, port))
    srv.listen(1)
    srv.settimeout(timeout)
    print("ready", flush=True)
    n = 0
    try:
        c, _ = srv.accept()
        c.settimeout(timeout)
        while True:
            b = c.recv(65536)
            if not b:
                break
            n += len(b)
    except OSError:
        pass
    print(n, flush=True)


if __name__ == "__main__":
    main()
