"""taas-agent's command line: options, defaults, token from the environment."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from taas.agent.cli import build_parser, main

REQUIRED = ["--host", "h1", "--server", "http://127.0.0.1:9", "--tunnel-ip", "172.31.9.1"]


def test_defaults_are_neutrons_and_documented_intervals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAAS_TOKEN", "from-env")
    args = build_parser().parse_args(REQUIRED)
    assert (args.integration_bridge, args.tunnel_bridge, args.tap_bridge) == \
        ("br-int", "br-tun", "br-tap")
    assert args.token == "from-env"
    assert (args.report_interval, args.resync_interval, args.reset_check_interval) == \
        (10.0, 2.0, 1.0)
    args = build_parser().parse_args([*REQUIRED, "--token", "t", "--ovsdb", "unix:/x/db.sock",
                                      "--ovs-rundir", "/x", "--integration-bridge", "bi"])
    assert (args.token, args.ovsdb, args.ovs_rundir, args.integration_bridge) == \
        ("t", "unix:/x/db.sock", "/x", "bi")


def test_token_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAAS_TOKEN", raising=False)
    with pytest.raises(SystemExit) as exc:
        main(REQUIRED)
    assert exc.value.code == 2


def test_module_entry_point_prints_help() -> None:
    out = subprocess.run([sys.executable, "-m", "taas.agent", "--help"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0
    assert "--tunnel-ip" in out.stdout and "--resync-interval" in out.stdout


def test_continuation_reaches_the_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    """--continuation is what tapped ports' frames do after their copies: the driver gets it."""
    import taas.agent.ovs.driver as driver_mod

    assert build_parser().parse_args([*REQUIRED, "--token", "t"]).continuation == "NORMAL"
    seen: dict[str, object] = {}

    class Stop(Exception):
        pass

    def fake_driver(*args: object, **kwargs: object) -> None:
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(driver_mod, "OvsDriver", fake_driver)
    # main() installs signal handlers; keep pytest's (the lab plugin cleans up on SIGTERM)
    monkeypatch.setattr(signal, "signal", lambda *_a: None)
    with pytest.raises(Stop):
        main([*REQUIRED, "--token", "t", "--continuation", "resubmit(,60)"])
    assert seen["continuation"] == "resubmit(,60)"


def test_missing_ovs_commands_are_named_with_their_package_before_anything_runs(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    import taas.agent.ovs.driver as driver_mod

    def no_driver(*_a: object, **_k: object) -> None:
        raise AssertionError("the agent started without its prerequisites")

    monkeypatch.setattr(driver_mod, "OvsDriver", no_driver)
    monkeypatch.setenv("PATH", str(tmp_path))  # no ovs-vsctl, no ovs-ofctl
    assert main([*REQUIRED, "--token", "t"]) == 2
    err = capsys.readouterr().err
    assert "ovs-vsctl (Debian package openvswitch-switch)" in err
    assert "ovs-ofctl (Debian package openvswitch-common)" in err
    assert "apt-get install openvswitch-common openvswitch-switch" in err
