"""The agent's one OVSDB connection against a real ovsdb-server (no ovs-vswitchd)."""

from __future__ import annotations

import pytest

from taas.agent.ovs.ovsdb import OvsdbClient
from taas.agent.ovs.tool import SwitchError

from .conftest import OvsdbServer


def test_reads_refuse_a_replica_being_reloaded(ovsdb: OvsdbServer) -> None:
    """While a reconnection reloads the database, a read raises instead of answering from
    nothing (a missing datapath_type must never become "system")."""
    ovsdb.vsctl("add-br", "br-int", "--", "set", "Bridge", "br-int", "datapath_type=netdev")
    client = OvsdbClient(ovsdb.remote)
    try:
        assert client.wait_ready(10)
        assert client.bridge_column("br-int", "datapath_type") == "netdev"
        assert "br-int" in client.interfaces()
        idl = client._idl
        with client.conn.lock:  # as during a reload: rows not there yet
            state, idl.state = idl.state, idl.IDL_S_SERVER_SCHEMA_REQUESTED
            try:
                with pytest.raises(SwitchError, match="reconnecting"):
                    client.bridge_column("br-int", "datapath_type")
                with pytest.raises(SwitchError, match="reconnecting"):
                    client.interfaces()
            finally:
                idl.state = state
    finally:
        client.close()
