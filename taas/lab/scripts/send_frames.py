"""Send raw Ethernet frames (hex, one per line on stdin) on an interface.

usage: send_frames.py IFACE INTERVAL_SECONDS < frames.hex

Prints "<time of the first send> <time of the last send> <frames sent>" (time.time(): the
clock of tcpdump's timestamps) when done.
"""

import socket
import sys
import time


def main() -> None:
    iface, interval = sys.argv[1], float(sys.argv[2])
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    lines = sys.stdin.read().split()
    first = time.time()
    start = time.monotonic()
    for i, line in enumerate(lines):
        if interval:
            # Paced by a schedule (frame i at start + i * interval), sleeping only when
            # ahead: a steady rate even when one sleep is much longer than the interval.
            ahead = start + i * interval - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        s.send(bytes.fromhex(line))
    print(f"{first:.6f} {time.time():.6f} {len(lines)}")


if __name__ == "__main__":
    main()
