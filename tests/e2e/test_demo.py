"""`make demo` stays working: run the demo end to end and check what it concluded."""

from __future__ import annotations

import re
import subprocess
import sys


def test_demo_runs_end_to_end_and_sees_exactly_the_mirrored_packets() -> None:
    res = subprocess.run([sys.executable, "-m", "taas.demo"], capture_output=True, text=True,
                         timeout=240)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "mon saw: vm1->vm3 3, vm3->vm1 3, vm2->vm3 3, vm3->vm2 0" in out, out[-3000:]
    assert "vm4 (project-b) saw 0 ICMP frames" in out, out[-3000:]
    assert "DEMO OK" in out
    # the demo cleans up after itself: its lab is gone (only its own: other runs on this
    # machine may have a demo lab up right now)
    m = re.search(r"lab up --name (\S+)", out)
    assert m, out[-3000:]
    assert f"tlab-{m.group(1)}-" not in subprocess.run(["ip", "netns", "list"],
                                                       capture_output=True, text=True).stdout
