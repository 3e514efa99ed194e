"""taas-server's command line: settings validation, config files, `db upgrade`."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "taas.server.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_help_documents_options(tmp_path: Path) -> None:
    out = run("--help", cwd=tmp_path).stdout
    for opt in ("--host", "--port", "--db-url", "--tokens-file", "--config", "vlan_range_start",
                "agent_down_time", "db upgrade", "--auth-strategy", "noauth"):
        assert opt in out
    # noauth's risk is spelled out where the option is offered.
    flat = " ".join(out.split())
    assert "trusts every caller" in flat and "labs only" in flat


def test_bad_auth_strategy_fails_clearly(tmp_path: Path) -> None:
    r = run("--auth-strategy", "keystone", "db", "upgrade", cwd=tmp_path)
    assert r.returncode == 2 and "keystone" in r.stderr
    cfg = tmp_path / "taas.yaml"
    cfg.write_text("auth_strategy: none\n")
    r = run("--config", str(cfg), "db", "upgrade", cwd=tmp_path)
    assert r.returncode == 2 and "auth_strategy must be one of token, noauth" in r.stderr
    assert not (tmp_path / "taas.sqlite").exists()


@pytest.mark.parametrize("content,suffix", [
    ({"vlan_range_start": 4000, "vlan_range_end": 3900}, ".json"),
    ("vlan_range_start: 0\n", ".yaml"),
    ("[taas]\nvlan_range_end = 5000\n", ".ini"),
    ("[taas]\nvlan_range_start = 4000\nvlan_range_end = 4090\n", ".ini"),
])
def test_bad_vlan_range_fails_clearly(tmp_path: Path, content: object, suffix: str) -> None:
    cfg = tmp_path / f"taas{suffix}"
    cfg.write_text(json.dumps(content) if isinstance(content, dict) else str(content))
    r = run("--config", str(cfg), "db", "upgrade", cwd=tmp_path)
    assert r.returncode == 2
    assert "1 <= start < end <= 4000" in r.stderr
    assert not (tmp_path / "taas.sqlite").exists()


def test_db_upgrade_creates_schema(tmp_path: Path) -> None:
    db = tmp_path / "x.sqlite"
    r = run("--db-url", f"sqlite:///{db}", "db", "upgrade", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    tables = {row[0] for row in sqlite3.connect(db).execute(
        "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"tap_services", "tap_flows", "tap_mirrors", "alembic_version"} <= tables
    assert run("--db-url", f"sqlite:///{db}", "db", "upgrade", cwd=tmp_path).returncode == 0


def test_default_db_is_a_sqlite_file_in_the_working_directory(tmp_path: Path) -> None:
    assert run("db", "upgrade", cwd=tmp_path).returncode == 0
    assert (tmp_path / "taas.sqlite").exists()


def test_unknown_command_and_bad_tokens_file(tmp_path: Path) -> None:
    assert run("frobnicate", cwd=tmp_path).returncode == 2
    bad = tmp_path / "tokens.json"
    bad.write_text('{"tokens": {"t": {"roles": ["emperor"]}}}')
    r = run("--tokens-file", str(bad), "--db-url", f"sqlite:///{tmp_path}/t.sqlite",
            "--port", "1", cwd=tmp_path)
    assert r.returncode == 2 and "emperor" in r.stderr
