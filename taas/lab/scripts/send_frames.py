"""Send raw Ethernet frames (hex, one per line on stdin) on an interface.

usage: send_frames.py IFACE INTERVAL_SECONDS < frames.hex
"""

import socket
import sys
import time


def main() -> None:
    iface, interval = sys.argv[1], float(sys.argv[2])
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    for line in sys.stdin.read().split():
        s.send(bytes.fromhex(line))
        if interval:
            time.sleep(interval)


if __name__ == "__main__":
    main()
