"""Fixtures of the CLI tests: a real taas-server and a runner of the real `taas` command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

# The installed console script when there is one, else the same entry point via -m.
TAAS = [shutil.which("taas")] if shutil.which("taas") else [sys.executable, "-m", "taas.cli"]


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Taas:
    """Runs `taas ...` as a subprocess against one server, as a given token's holder."""

    def __init__(self, url: str, tokens: dict[str, str]) -> None:
        self.url = url
        self.tokens = tokens

    def run(self, *args: str, as_: str = "admin", env: dict[str, str] | None = None,
            check: bool = True) -> Result:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("TAAS_")}
        full_env.update({"TAAS_URL": self.url, "TAAS_TOKEN": self.tokens[as_]})
        full_env.update(env or {})
        proc = subprocess.run([*TAAS, *args], capture_output=True, text=True, env=full_env,
                              timeout=60)
        res = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and res.code != 0:
            raise AssertionError(f"taas {' '.join(args)} failed ({res.code}): {res.err}")
        return res

    def json(self, *args: str, as_: str = "admin") -> Any:
        return self.run(*args, "-f", "json", as_=as_).json()


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    from taas.testing.server import run_server

    with run_server() as srv:
        yield srv


@pytest.fixture(scope="module")
def taas(server: Any) -> Taas:
    return Taas(server.url, server.tokens)


@pytest.fixture
def make_taas() -> type[Taas]:
    return Taas
