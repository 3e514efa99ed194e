"""Two taas-server replicas sharing PostgreSQL: a change on one wakes watchers on the other."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from taas.testing.postgres import create_database
from taas.testing.server import run_server


def test_change_on_one_replica_wakes_long_poll_on_the_other(pg_cluster: str) -> None:
    url = create_database(pg_cluster, f"taas_{uuid.uuid4().hex[:12]}")
    # A long poll interval: only LISTEN/NOTIFY can wake the watcher quickly.
    with run_server(db_url=url, revision_poll_interval=60) as one, \
            run_server(db_url=url, revision_poll_interval=60) as two:
        host = "replica-host"
        with one.client("service") as svc:
            svc.put(f"/v2.0/taas-agents/{host}", json={"agent": {"tunnel_ip": "10.2.2.2"}})
            current = svc.get(f"/v2.0/taas-agents/{host}/desired-state").json()[
                "desired_state"]["revision"]
        result: dict[str, Any] = {}

        def watch() -> None:
            with one.client("service", timeout=60) as c:
                t = time.monotonic()
                r = c.get(f"/v2.0/taas-agents/{host}/desired-state",
                          params={"revision": current, "timeout": 30})
                result["elapsed"] = time.monotonic() - t
                result["revision"] = r.json()["desired_state"]["revision"]

        watcher = threading.Thread(target=watch)
        watcher.start()
        time.sleep(0.5)
        with two.client("admin") as admin:
            net = admin.post("/v2.0/networks", json={"network": {"project_id": "project-a"}})
            assert net.status_code == 201
            # Bound to the watched host: this change concerns it (the NOTIFY names it).
            port = admin.post("/v2.0/ports", json={"port": {"network_id": net.json()[
                "network"]["id"], "binding:host_id": host}})
            assert port.status_code == 201
        watcher.join(timeout=40)
        assert result["revision"] > current
        assert result["elapsed"] < 10, result
