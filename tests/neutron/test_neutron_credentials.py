"""The Neutron port backend's credentials (taas/server/ports/neutron_client.py) against the
session's real Keystone: password login through keystoneauth1, a new token when Neutron refuses
the old one, a static token, and settings from a [neutron] section.

The network endpoint here is a small HTTP server that checks each token with Keystone on every
call, as neutron-server's keystonemiddleware does with its cache off (the lab's neutron-server
caches validations for minutes, so a revoked token could not be shown there within a test).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from taas.server.config import ConfigError, build_settings, read_config_file
from taas.server.ports.neutron_client import NeutronClient, NeutronUnavailable
from taas.testing.keystone import Keystone

USER = "nks-neutron-reader"


class Endpoint:
    """GET /v2.0/networks -> 200 for a token Keystone says is valid, else 401."""

    def __init__(self, ks: Keystone) -> None:
        self.ks = ks
        self.seen: list[tuple[str, int]] = []  # (token, status)
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                token = self.headers.get("X-Auth-Token", "")
                r = httpx.get(endpoint.ks.auth_url + "/auth/tokens", timeout=30, headers={
                    "X-Auth-Token": endpoint.ks.admin_token(), "X-Subject-Token": token})
                status = 200 if r.status_code == 200 else 401
                endpoint.seen.append((token, status))
                body = json.dumps({"networks": []} if status == 200 else {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_a: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def endpoint(keystone: Keystone) -> Iterator[Endpoint]:
    if USER not in keystone.users:
        keystone.add_user(USER, "service", ["service"])
    ep = Endpoint(keystone)
    yield ep
    ep.close()


def _client(ks: Keystone, url: str, **extra: Any) -> NeutronClient:
    user = ks.users[USER]
    values = {"port_backend": "neutron", "neutron_url": url, "neutron_auth_url": ks.auth_url,
              "neutron_username": user.name, "neutron_password": user.password,
              "neutron_project_name": user.project, **extra}
    return NeutronClient(build_settings(values, {}))


def test_password_login_and_a_new_token_after_revocation(keystone: Keystone,
                                                         endpoint: Endpoint) -> None:
    client = _client(keystone, endpoint.url)
    try:
        assert client.get("/v2.0/networks").json() == {"networks": []}
        first = endpoint.seen[-1][0]
        assert endpoint.seen[-1] == (first, 200)
        keystone.revoke(first)
        r = client.get("/v2.0/networks")
        assert r.status_code == 200
        assert endpoint.seen[-2:] == [(first, 401), (endpoint.seen[-1][0], 200)]
        assert endpoint.seen[-1][0] != first  # logged in again
    finally:
        client.close()


def test_static_token_and_bad_password(keystone: Keystone, endpoint: Endpoint) -> None:
    token = keystone.token(USER)
    static = NeutronClient(build_settings({"port_backend": "neutron", "neutron_url": endpoint.url,
                                           "neutron_token": token}, {}))
    try:
        assert static.get("/v2.0/networks").status_code == 200
        assert endpoint.seen[-1] == (token, 200)
    finally:
        static.close()
    wrong = _client(keystone, endpoint.url, neutron_password="not-the-password")
    try:
        with pytest.raises(NeutronUnavailable) as err:
            wrong.get("/v2.0/networks")
        assert "not-the-password" not in str(err.value)
    finally:
        wrong.close()


def test_neutron_section_in_ini_and_yaml(tmp_path: Path) -> None:
    ini = tmp_path / "server.ini"
    ini.write_text("[DEFAULT]\nport_backend = neutron\n[neutron]\nauth_url = http://ks:5000/v3\n"
                   "username = taas\npassword = pw\nproject_name = service\n"
                   "region_name = RegionTwo\n")
    s = build_settings(read_config_file(str(ini)), {})
    assert (s.neutron_auth_url, s.neutron_username, s.neutron_password, s.neutron_region_name,
            s.neutron_url) == ("http://ks:5000/v3", "taas", "pw", "RegionTwo", None)
    yml = tmp_path / "server.yaml"
    yml.write_text("port_backend: neutron\nneutron:\n  url: http://neutron:9696\n"
                   "  token: abc\n")
    s = build_settings(read_config_file(str(yml)), {})
    assert (s.neutron_url, s.neutron_token) == ("http://neutron:9696", "abc")
    for bad in ({"port_backend": "neutron"},
                {"port_backend": "neutron", "neutron_auth_url": "http://ks/v3"},
                {"port_backend": "neutron", "neutron_token": "t"}):
        with pytest.raises(ConfigError):
            build_settings(bad, {})
    ini.write_text("[taas]\nport_backend = neutron\n[neutron]\nurl = http://n:9696\n"
                   "colour = blue\n")
    with pytest.raises(ConfigError, match="neutron_colour"):
        build_settings(read_config_file(str(ini)), {})
