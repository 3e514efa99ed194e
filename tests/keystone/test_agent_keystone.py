"""taas-agent's client logs in to the session's real Keystone as a user with the service role,
and logs in again when taas-server refuses a token Keystone revoked (issue 7)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from taas.agent import cli
from taas.agent.auth import KeystoneCredentials, KeystoneToken
from taas.agent.client import ServerClient, ServerError
from taas.testing.keystone import Keystone, User, run_keystone_server
from taas.testing.server import ServerProcess


@pytest.fixture(scope="module")
def server(keystone: Keystone) -> Iterator[ServerProcess]:
    # TTL 0: a revoked token is refused at once, so the re-login is what the test sees.
    with run_keystone_server(keystone, keystone_cache_ttl=0) as srv:
        yield srv


@pytest.fixture(scope="module")
def users(keystone: Keystone) -> dict[str, User]:
    return {"agent": keystone.add_user("agentks-svc", "service", ["service"]),
            "member": keystone.add_user("agentks-member", "project-a", ["member"])}


@contextmanager
def agent_client(srv: ServerProcess, auth: KeystoneToken, host: str) -> Iterator[ServerClient]:
    client = ServerClient(srv.url, auth, host)
    try:
        yield client
    finally:
        client.close()


def login(ks: Keystone, user: User) -> KeystoneToken:
    return KeystoneToken(KeystoneCredentials(
        auth_url=ks.auth_url, username=user.name, password=user.password,
        project_name=user.project))


def test_service_user_logs_in_and_again_after_revocation(
        server: ServerProcess, keystone: Keystone, users: dict[str, User]) -> None:
    auth = login(keystone, users["agent"])
    with agent_client(server, auth, "agentks-host") as client:
        assert client.heartbeat("10.9.9.1")["host"] == "agentks-host"
        first = auth.token()
        state = client.get_desired_state(None, timeout=0)
        assert state.host == "agentks-host"
        # Keystone revokes the cached token: the watch (its own connection) gets a 401,
        # logs in again and answers; so does the next heartbeat after a second revocation.
        keystone.revoke(first)
        assert client.get_desired_state(None, timeout=0).host == "agentks-host"
        second = auth.token()
        assert second != first
        keystone.revoke(second)
        assert client.heartbeat("10.9.9.2")["configurations"]["tunnel_ip"] == "10.9.9.2"
        assert auth.token() not in (first, second)


def test_user_without_service_role_is_403(server: ServerProcess, keystone: Keystone,
                                          users: dict[str, User]) -> None:
    with agent_client(server, login(keystone, users["member"]), "agentks-host2") as client:
        with pytest.raises(ServerError) as err:
            client.heartbeat("10.9.9.3")
    assert err.value.status_code == 403
    assert "10.9.9.3" not in str(err.value)


def test_wrong_password_is_a_clear_error_without_the_password(
        server: ServerProcess, keystone: Keystone, users: dict[str, User]) -> None:
    bad = User(users["agent"].name, "not-the-password-42", "service", [])
    with agent_client(server, login(keystone, bad), "agentks-host3") as client:
        with pytest.raises(ServerError) as err:
            client.heartbeat("10.9.9.4")
    assert "Keystone login failed" in str(err.value)
    assert "not-the-password-42" not in str(err.value)


def test_cli_takes_the_os_environment(monkeypatch: pytest.MonkeyPatch, keystone: Keystone,
                                      users: dict[str, User]) -> None:
    user = users["agent"]
    for name, value in {"AUTH_URL": keystone.auth_url, "USERNAME": user.name,
                        "PASSWORD": user.password, "PROJECT_NAME": user.project}.items():
        monkeypatch.setenv(f"OS_{name}", value)
    monkeypatch.delenv("TAAS_TOKEN", raising=False)
    parser = cli.build_parser()
    args = parser.parse_args(["--host", "h", "--server", "http://s", "--tunnel-ip", "10.0.0.1"])
    auth = cli.token_source(parser, args)
    assert isinstance(auth, KeystoneToken)
    token, _ = keystone.issue_token(user.name, user.password, user.project)
    assert auth.token() and auth.token() != token  # its own login, cached
    assert user.password not in parser.format_help()
