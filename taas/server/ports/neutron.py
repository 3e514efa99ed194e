"""Port backend "neutron": networks and ports come from neutron-server.

taas keeps a read-only replica of Neutron's networks and ports in its own `networks`/`ports`
tables (the rest of the server reads those, whatever the backend), so tap resources are checked
and compiled exactly as with the built-in inventory. The replica follows Neutron by:

- **notifications** (oslo.messaging "messagingv2" on RabbitMQ, what Ceilometer and Designate
  consume): `port.*.end` / `network.*.end` events name the object; it is then read from the
  API (latest state wins whatever the order of events) or, for a delete, removed here with its
  tap resources. Our own auto-delete queue, bound to the exchange: other consumers of
  `notifications.info` are not robbed of their events.
- **a full resync** at start, on every (re)connection to RabbitMQ, and every
  `neutron_resync_interval` seconds (default 60): two list calls; it repairs whatever a lost
  event left wrong (level-triggered, like the agents).

Changes made by Neutron's own RPC (status) carry nothing taas needs. A port whose binding moves
to another host moves its flows (desired states follow `ports.host`); a port deleted in Neutron
deletes the tap services, tap flows and tap mirrors that name it. A Neutron network whose
segmentation id lies in the taas VNI range is refused (logged; its ports cannot be tapped):
tenant traffic with that VNI would be taken for mirrored copies.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import zlib
from typing import Any

import requests

from taas.server.config import Settings
from taas.server.db.models import Network, Port
from taas.server.db.repositories import AgentRepository, NetworkRepository, PortRepository
from taas.server.db.session import Database, UnitOfWork
from taas.server.drivers.base import ServiceDriver
from taas.server.ports.neutron_client import NeutronClient, NeutronUnavailable
from taas.server.services import errors, lifecycle
from taas.server.services.inventory import Inventory
from taas.server.services.tap import TapResources, now

LOG = logging.getLogger(__name__)
READ_THROUGH_TIMEOUT = 5.0  # seconds
TUNNEL_TYPES = ("vxlan", "geneve", "gre")
NET_FIELDS = ("id", "project_id", "name", "description", "admin_state_up",
              "provider:network_type", "provider:segmentation_id")
PORT_FIELDS = ("id", "project_id", "network_id", "name", "description", "mac_address",
               "binding:host_id", "device_owner", "device_id", "admin_state_up", "fixed_ips")


class ManagedByNeutron(errors.TaasError):
    status, type = 409, "Conflict"


class NeutronUnreachable(errors.TaasError):
    status, type = 503, "HTTPServiceUnavailable"


class NeutronInventory(Inventory):
    """The inventory API reads the replica; writes belong to Neutron."""

    def __init__(self, settings: Settings, driver: ServiceDriver, taps: TapResources,
                 db: Database) -> None:
        super().__init__(settings, driver, taps)
        self.sync = NeutronSync(self, db, settings)
        taps.port_miss = self.sync.read_through

    def start(self) -> None:
        self.sync.start()

    def stop(self) -> None:
        self.sync.stop()

    def sync_port(self, port_id: str) -> None:
        """Neutron's TaaS plugin calls this when Neutron deletes a port, before Neutron answers:
        its tap resources are gone by then, as with the original's in-transaction cascade."""
        try:
            self.sync.apply("port", port_id, deleted=False)
        except (NeutronUnavailable, requests.RequestException, ValueError, KeyError) as exc:
            LOG.warning("cannot read port %s from Neutron: %s", port_id, exc)
            raise NeutronUnreachable("Neutron could not be asked about the port; its "
                                     "notification will be applied instead") from None

    def _refuse(self, *_a: Any, **_k: Any) -> Any:
        raise ManagedByNeutron("Networks and ports are managed by Neutron here "
                               "(port_backend = neutron): change them in Neutron")

    create_network = update_network = delete_network = _refuse
    create_port = update_port = delete_port = _refuse

    # ---- the replica (called by NeutronSync) ---------------------------------------------------

    def _segmentation_id(self, net: dict[str, Any]) -> int | None:
        """The network's VNI for tunnel types; other types (vlan, flat) get a negative stand-in
        unique per network (the column is unique and only VNIs matter to taas)."""
        seg = net.get("provider:segmentation_id")
        if net.get("provider:network_type") in TUNNEL_TYPES and seg is not None:
            if seg in self.settings.taas_vni_range:
                LOG.error("Neutron network %s uses VNI %s, inside the taas range %s..%s: "
                          "ignored (its ports cannot be tapped); move Neutron's vni_ranges",
                          net["id"], seg, self.settings.taas_vni_range.start,
                          self.settings.taas_vni_range.stop - 1)
                return None
            return int(seg)
        return -(zlib.crc32(net["id"].encode()) & 0x7FFFFFFF) - 1

    def put_network(self, uow: UnitOfWork, net: dict[str, Any]) -> bool:
        seg = self._segmentation_id(net)
        if seg is None:
            self.drop_network(uow, net["id"])
            return False
        repo = NetworkRepository(uow.session)
        row = repo.get(net["id"])
        values = dict(project_id=net.get("project_id") or "", name=net.get("name") or "",
                      description=net.get("description") or "", segmentation_id=seg,
                      admin_state_up=bool(net.get("admin_state_up", True)))
        if row is None:
            other = repo.by_segmentation_id(seg)
            if other is not None:  # Neutron reused a VNI whose old network we missed
                self.drop_network(uow, other.id)
            repo.add(Network(id=net["id"], created_at=now(), **values))
        elif any(getattr(row, k) != v for k, v in values.items()):
            moved_vni = row.segmentation_id != seg
            for k, v in values.items():
                setattr(row, k, v)
            uow.session.flush()
            if moved_vni:  # the ports' facts in desired states carry it
                ports = {p.id for p in uow.session.query(Port).filter(Port.network_id == row.id)}
                self._changed(uow, "network", row, self._concerned(uow, ports))
        return True

    def put_port(self, uow: UnitOfWork, port: dict[str, Any]) -> None:
        session = uow.session
        if NetworkRepository(session).get(port["network_id"]) is None:
            self.drop_port(uow, port["id"])
            return
        repo = PortRepository(session)
        row = repo.get(port["id"])
        values = dict(project_id=port.get("project_id") or "", network_id=port["network_id"],
                      name=port.get("name") or "", description=port.get("description") or "",
                      mac_address=port["mac_address"].lower(),
                      host=port.get("binding:host_id") or None,
                      device_owner=port.get("device_owner") or "",
                      device_id=port.get("device_id") or "",
                      admin_state_up=bool(port.get("admin_state_up", True)),
                      fixed_ips=list(port.get("fixed_ips") or []))
        if row is None:
            row = Port(id=port["id"], created_at=now(), **values)
            repo.add(row)
            self._changed(uow, "port", row, self._concerned(uow, {row.id}))
            return
        changed = {k for k, v in values.items() if getattr(row, k) != v}
        if not changed:
            return
        hosts = self._concerned(uow, {row.id})
        if "host" in changed:  # both agents (woken) send their whole port sets again
            both = {h for h in (row.host, values["host"]) if h}
            AgentRepository(session).unsettle_ports(both)
            hosts |= both
        for k in changed:
            setattr(row, k, values[k])
        session.flush()
        if "host" in changed:  # the binding moved: statuses and desired states follow
            lifecycle.refresh(session, self.settings.agent_down_time, port_ids={row.id})
        self._changed(uow, "port", row, hosts | self._concerned(uow, {row.id}))

    def drop_port(self, uow: UnitOfWork, port_id: str) -> None:
        row = PortRepository(uow.session).get(port_id)
        if row is None:
            return
        hosts = self._concerned(uow, {row.id})
        self.taps.delete_port_users(uow, row.id)
        PortRepository(uow.session).remove(row)
        self._changed(uow, "port", row, hosts)

    def drop_network(self, uow: UnitOfWork, network_id: str) -> None:
        session = uow.session
        for p in list(session.query(Port).filter(Port.network_id == network_id)):
            self.drop_port(uow, p.id)
        row = NetworkRepository(session).get(network_id)
        if row is not None:
            session.flush()
            NetworkRepository(session).remove(row)

    def known_ids(self, uow: UnitOfWork) -> tuple[set[str], set[str]]:
        s = uow.session
        return ({i for (i,) in s.query(Network.id)}, {i for (i,) in s.query(Port.id)})


class NeutronSync:
    """Keeps the replica current: full resyncs plus notification-driven single updates."""

    def __init__(self, inventory: NeutronInventory, db: Database, settings: Settings) -> None:
        self.inv = inventory
        self.db = db
        self.settings = settings
        self.http = NeutronClient(settings)
        self.events: queue.Queue[tuple[str, str, bool] | None] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.last_full_sync = 0.0
        self.synced = threading.Event()

    # ---- threads --------------------------------------------------------------------------------
    def start(self) -> None:
        self._threads = [threading.Thread(target=self._run, name="neutron-sync", daemon=True)]
        if self.settings.neutron_transport_url:
            self._threads.append(threading.Thread(target=self._listen, name="neutron-events",
                                                  daemon=True))
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        self.events.put(None)
        for t in self._threads:
            t.join(timeout=3)
        self.http.close()

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            due = self.last_full_sync + self.settings.neutron_resync_interval
            try:
                if time.monotonic() >= due:
                    self.full_sync()
                    backoff = 0.5
                item = self.events.get(timeout=max(0.0, due - time.monotonic()))
                if item is None:
                    continue
                kind, obj_id, deleted = item
                if kind == "resync":
                    self.last_full_sync = 0.0
                    continue
                self.apply(kind, obj_id, deleted)
            except queue.Empty:
                continue
            except Exception:  # noqa: BLE001 - Neutron down, a bug: log, retry, never die
                LOG.exception("neutron sync failed; retrying in %.1f s", backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _listen(self) -> None:
        """Consume Neutron's notifications; each one becomes a (kind, id, deleted) event."""
        from kombu import Connection, Exchange, Queue

        exchange = Exchange(self.settings.neutron_exchange, type="topic", durable=False)
        q = Queue(f"taas-server-{id(self):x}-{time.time_ns():x}", exchange,
                  routing_key="notifications.*", durable=False, auto_delete=True, exclusive=True)
        while not self._stop.is_set():
            try:
                with Connection(kombu_url(self.settings.neutron_transport_url),
                                connect_timeout=5) as conn:
                    with conn.Consumer(q, callbacks=[self._on_message], accept=["json"]):
                        LOG.info("following Neutron notifications on exchange %s",
                                 self.settings.neutron_exchange)
                        self.events.put(("resync", "", False))  # events missed while away
                        while not self._stop.is_set():
                            try:
                                conn.drain_events(timeout=1)
                            except TimeoutError:
                                conn.heartbeat_check()
            except Exception as exc:  # noqa: BLE001 - broker down: retry
                if not self._stop.is_set():
                    LOG.warning("Neutron notifications: %s; reconnecting", exc)
                    self._stop.wait(1.0)

    def _on_message(self, body: Any, message: Any) -> None:
        message.ack()
        try:
            events = parse_notification(body)
        except (ValueError, TypeError, KeyError, AttributeError):
            LOG.debug("ignoring a notification that is not an oslo message: %r", body)
            return
        for event in events:
            self.events.put(event)

    # ---- work -------------------------------------------------------------------------------
    def _get(self, path: str, **params: Any) -> Any:
        return self.http.get(path, **params)

    def full_sync(self) -> None:
        t0 = time.monotonic()
        nets = self._list("/v2.0/networks", "networks", NET_FIELDS)
        ports = self._list("/v2.0/ports", "ports", PORT_FIELDS)
        with self.db.write() as uow:
            have_nets, have_ports = self.inv.known_ids(uow)
            ok_nets = {n["id"] for n in nets if self.inv.put_network(uow, n)}
            uow.session.flush()
            for p in ports:
                if p["network_id"] in ok_nets:
                    self.inv.put_port(uow, p)
            for pid in have_ports - {p["id"] for p in ports if p["network_id"] in ok_nets}:
                self.inv.drop_port(uow, pid)
            uow.session.flush()
            for nid in have_nets - ok_nets:
                self.inv.drop_network(uow, nid)
        self.last_full_sync = time.monotonic()
        self.synced.set()
        LOG.info("neutron full sync: %d networks, %d ports in %.0f ms", len(nets), len(ports),
                 (time.monotonic() - t0) * 1000)

    def _list(self, path: str, key: str, fields: tuple[str, ...]) -> list[dict[str, Any]]:
        r = self._get(path, fields=list(fields))
        r.raise_for_status()
        return list(r.json()[key])

    def fetch(self, kind: str, obj_id: str, timeout: float | None = None
              ) -> dict[str, Any] | None:
        """Neutron's network or port `obj_id` (None: it does not exist)."""
        plural = "networks" if kind == "network" else "ports"
        fields = NET_FIELDS if kind == "network" else PORT_FIELDS
        r = self.http.get(f"/v2.0/{plural}/{obj_id}", timeout=timeout, fields=list(fields))
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return dict(r.json()[kind])

    def read_through(self, uow: UnitOfWork, port_id: str) -> Port | None:
        """A port the replica does not know yet (created in Neutron a moment ago, its
        notification still on its way): read it, with its network, into this transaction.
        Short timeout: the caller's write transaction waits for it."""
        try:
            port = self.fetch("port", port_id, timeout=READ_THROUGH_TIMEOUT)
            if port is None:
                return None
            if NetworkRepository(uow.session).get(port["network_id"]) is None:
                net = self.fetch("network", port["network_id"], timeout=READ_THROUGH_TIMEOUT)
                if net is None or not self.inv.put_network(uow, net):
                    return None
                uow.session.flush()
        except (NeutronUnavailable, requests.RequestException, ValueError, KeyError) as exc:
            # Not a 404: the port may well exist; the client should retry.
            LOG.warning("cannot read port %s from Neutron: %s", port_id, exc)
            raise NeutronUnreachable(f"Port {port_id} is not known here yet and Neutron could "
                                     "not be asked about it; try again later") from None
        self.inv.put_port(uow, port)
        uow.session.flush()
        LOG.info("port %s read from Neutron ahead of its notification", port_id)
        return PortRepository(uow.session).get(port_id)

    def apply(self, kind: str, obj_id: str, deleted: bool) -> None:
        """One object changed in Neutron: read it back (or drop it) in one transaction."""
        data = None if deleted else self.fetch(kind, obj_id)
        with self.db.write() as uow:
            if kind == "network":
                if data is None:
                    self.inv.drop_network(uow, obj_id)
                else:
                    self.inv.put_network(uow, data)
            elif data is None:
                self.inv.drop_port(uow, obj_id)
            else:
                self.inv.put_port(uow, data)
        LOG.debug("neutron %s %s %s", kind, obj_id, "deleted" if data is None else "updated")


def parse_notification(body: Any) -> list[tuple[str, str, bool]]:
    """[(kind, id, deleted)] of a Neutron port/network notification ([] for other events;
    a bulk create names several objects).

    oslo.messaging wraps the notification: {"oslo.version": "2.0", "oslo.message": "<json>"}."""
    if isinstance(body, (str, bytes)):
        body = json.loads(body)
    if "oslo.message" in body:
        body = json.loads(body["oslo.message"])
    event = str(body["event_type"])
    kind, _, rest = event.partition(".")
    if kind not in ("port", "network") or not rest.endswith(".end"):
        return []
    payload = body.get("payload") or {}
    deleted = rest.startswith("delete")
    if payload.get(f"{kind}_id"):
        return [(kind, str(payload[f"{kind}_id"]), deleted)]
    objs = payload.get(kind + "s") if isinstance(payload.get(kind + "s"), list) else \
        [payload.get(kind)]
    return [(kind, str(o["id"]), deleted) for o in objs if isinstance(o, dict) and o.get("id")]


def kombu_url(transport_url: str) -> str:
    """oslo.messaging's rabbit://user:pw@host:port/vhost as kombu's amqp:// URL."""
    return "amqp://" + transport_url.split("://", 1)[1] if transport_url.startswith(
        "rabbit://") else transport_url
