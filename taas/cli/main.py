"""`taas`: the command-line client, in the vocabulary of `openstack tap ...`."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Sequence
from typing import Any

import click

from taas.cli.client import DEFAULT_URL, KINDS, Client, TaasError
from taas.cli.limits import ALL, RATES, limit_attrs, limit_options
from taas.cli.output import FORMATS, render_list, render_one

# Columns of `list` (and the order of table output); -c can pick any field.
LIST_COLUMNS: dict[str, list[str]] = {
    "tap_service": ["id", "project_id", "name", "port_id", "max_pps", "max_kbps", "status"],
    "tap_flow": ["id", "project_id", "name", "source_port", "tap_service_id", "direction",
                 "vlan_filter", "tap_filter_id", "snaplen", "max_pps", "max_kbps", "status"],
    "tap_filter": ["id", "project_id", "name", "default_action", "rules"],
    "tap_mirror": ["id", "project_id", "name", "port_id", "directions", "remote_ip",
                   "mirror_type", "snaplen", "max_pps", "max_kbps", "status"],
    "network": ["id", "name", "project_id", "provider:segmentation_id"],
    "port": ["id", "name", "network_id", "mac_address", "binding:host_id", "project_id"],
    "agent": ["id", "host", "alive", "configurations", "heartbeat_timestamp"],
}


class Session:
    """Connection settings from the root options; the client is built on first use."""

    def __init__(self, url: str, token: str | None, timeout: float) -> None:
        self.url = url
        self.token = token
        self.timeout = timeout
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.url, self.token or "", timeout=self.timeout)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


class RootGroup(click.Group):
    """Turns API errors into one line on stderr and loads `taas lab` only when asked for."""

    LAZY = {"lab": ("taas.lab.cli", "lab")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx))
        for name, (module, _) in self.LAZY.items():
            try:
                if importlib.util.find_spec(module) is not None:
                    names.add(name)
            except ImportError:
                pass
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.LAZY:
            module, attr = self.LAZY[cmd_name]
            try:
                found = importlib.util.find_spec(module) is not None
            except ImportError:
                found = False
            if not found:
                return None
            try:
                return getattr(importlib.import_module(module), attr)
            except Exception as exc:  # a broken optional module must not break the client
                raise click.ClickException(f"cannot load `taas {cmd_name}`: {exc}") from exc
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TaasError as exc:
            raise click.ClickException(str(exc)) from None


def output_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("-c", "--column", "columns", multiple=True, metavar="COLUMN",
                     help="Show only this column (repeatable).")(f)
    f = click.option("-f", "--format", "fmt", type=click.Choice(FORMATS), default="table",
                     show_default=True, help="Output format.")(f)
    return f


def list_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """What every list command takes: --name, --project, and the output options."""
    f = output_options(f)
    f = click.option("--project", default=None, help="Only this project's (admin).")(f)
    return click.option("--name", default=None)(f)


def _session() -> Session:
    return click.get_current_context().find_object(Session)  # type: ignore[return-value]


def _client() -> Client:
    return _session().client


def _show(item: dict[str, Any], fmt: str, columns: Sequence[str]) -> None:
    click.echo(render_one(item, fmt, columns))


def _list(kind: str, items: list[dict[str, Any]], fmt: str, columns: Sequence[str]) -> None:
    out = render_list(items, LIST_COLUMNS[kind], fmt, columns)
    if out:
        click.echo(out)


def _drop_none(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attrs.items() if v is not None}


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--os-url", envvar="TAAS_URL", default=DEFAULT_URL, show_default=True,
              help="taas-server endpoint (env TAAS_URL).")
@click.option("--os-token", envvar="TAAS_TOKEN", default=None,
              help="Auth token sent as X-Auth-Token (env TAAS_TOKEN).")
@click.option("--timeout", type=float, default=30.0, show_default=True,
              help="HTTP timeout in seconds.")
@click.pass_context
def cli(ctx: click.Context, os_url: str, os_token: str | None, timeout: float) -> None:
    """Tap-as-a-Service client: mirror VM ports' traffic to a monitor or a remote collector."""
    session = Session(os_url, os_token, timeout)
    ctx.obj = session
    ctx.call_on_close(session.close)


# -- generic subcommands shared by the resource groups ------------------------------------------


def add_show_update_delete(group: click.Group, kind: str, updatable: bool,
                           limits: tuple[str, ...] = ()) -> None:
    """show / delete (and update of name, description and ``limits``) for one resource kind."""
    label = KINDS[kind].label

    @group.command("show", help=f"Show one {label}.")
    @click.argument("name_or_id")
    @output_options
    def show(name_or_id: str, fmt: str, columns: tuple[str, ...]) -> None:
        _show(_client().find(kind, name_or_id), fmt, columns)

    @group.command("delete", help=f"Delete {label}s (names or ids).")
    @click.argument("names_or_ids", nargs=-1, required=True)
    def delete(names_or_ids: tuple[str, ...]) -> None:
        client = _client()
        failed = 0
        for ref in names_or_ids:
            try:
                client.delete(kind, client.find_id(kind, ref))
            except TaasError as exc:
                if exc.status is None and len(names_or_ids) == 1:
                    raise
                failed += 1
                click.echo(f"Error: failed to delete {label} {ref!r}: {exc}", err=True)
        if failed:
            raise click.exceptions.Exit(1)

    if not updatable:
        return

    what = "name, description" + "".join(f", {k}" for k in limits)

    @group.command("update", help=f"Change a {label}'s {what}.")
    @click.argument("name_or_id")
    @click.option("--name", default=None, help="New name.")
    @click.option("--description", default=None, help="New description.")
    @limit_options(limits, update=True)
    @output_options
    def update(name_or_id: str, name: str | None, description: str | None, fmt: str,
               columns: tuple[str, ...], **given: Any) -> None:
        attrs = {**_drop_none({"name": name, "description": description}),
                 **limit_attrs(given)}
        if not attrs:
            raise click.UsageError(f"nothing to update: give one of {what}")
        client = _client()
        _show(client.update(kind, client.find_id(kind, name_or_id), attrs), fmt, columns)


def _project_filter(project: str | None) -> dict[str, Any]:
    return {"project_id": project} if project else {}


# -- tap service / tap flow / tap mirror ------------------------------------------------------


@cli.group()
def tap() -> None:
    """Tap services, tap flows and tap mirrors."""


@tap.group("service")
def tap_service() -> None:
    """Tap services: where mirrored traffic is delivered (a monitor VM's port)."""


@tap_service.command("create")
@click.option("--port", required=True, help="Destination (monitor) port, name or id.")
@click.option("--name", default=None, help="Name of the tap service.")
@click.option("--description", default=None)
@click.option("--project", default=None, help="Owning project (admin only).")
@limit_options(RATES)
@output_options
def tap_service_create(port: str, name: str | None, description: str | None,
                       project: str | None, fmt: str, columns: tuple[str, ...],
                       **limits: Any) -> None:
    """Create a tap service (max-pps / max-kbps: a ceiling on all it delivers)."""
    client = _client()
    attrs = _drop_none({"port_id": client.find_id("port", port), "name": name,
                        "description": description, "project_id": project,
                        **limit_attrs(limits)})
    _show(client.create("tap_service", attrs), fmt, columns)


@tap_service.command("list")
@click.option("--name", default=None, help="Only tap services with this name.")
@click.option("--project", default=None, help="Only this project's (admin).")
@output_options
def tap_service_list(name: str | None, project: str | None, fmt: str,
                     columns: tuple[str, ...]) -> None:
    """List tap services."""
    items = _client().list("tap_service", name=name, **_project_filter(project))
    _list("tap_service", items, fmt, columns)


add_show_update_delete(tap_service, "tap_service", updatable=True, limits=RATES)


@tap.group("flow")
def tap_flow() -> None:
    """Tap flows: which port's traffic is mirrored to which tap service."""


@tap_flow.command("create")
@click.option("--port", required=True, help="Source port whose traffic is mirrored.")
@click.option("--tap-service", required=True, help="Tap service receiving the copies.")
@click.option("--direction", required=True, type=click.Choice(["IN", "OUT", "BOTH"],
              case_sensitive=False), metavar="[IN|OUT|BOTH]",
              help="IN: to the port; OUT: from the port; BOTH.")
@click.option("--vlan-filter", default=None, help="VLAN ids to mirror, e.g. 10-20,30.")
@click.option("--filter", "tap_filter", default=None,
              help="Tap filter (name or id) deciding which frames are copied.")
@click.option("--name", default=None)
@click.option("--description", default=None)
@click.option("--project", default=None, help="Owning project (admin only).")
@limit_options(ALL)
@output_options
def tap_flow_create(port: str, tap_service: str, direction: str, vlan_filter: str | None,
                    tap_filter: str | None, name: str | None, description: str | None,
                    project: str | None, fmt: str, columns: tuple[str, ...],
                    **limits: Any) -> None:
    """Create a tap flow (snaplen, max-pps, max-kbps: applied to its copies)."""
    client = _client()
    attrs = _drop_none({
        "source_port": client.find_id("port", port),
        "tap_service_id": client.find_id("tap_service", tap_service),
        "direction": direction.upper(), "vlan_filter": vlan_filter, "name": name,
        "description": description, "project_id": project,
        "tap_filter_id": client.find_id("tap_filter", tap_filter) if tap_filter else None,
        **limit_attrs(limits),
    })
    _show(client.create("tap_flow", attrs), fmt, columns)


@tap_flow.command("list")
@click.option("--tap-service", default=None, help="Only flows feeding this tap service.")
@click.option("--port", default=None, help="Only flows of this source port.")
@list_options
def tap_flow_list(tap_service: str | None, port: str | None, name: str | None,
                  project: str | None, fmt: str, columns: tuple[str, ...]) -> None:
    """List tap flows."""
    client = _client()
    filters: dict[str, Any] = {"name": name, **_project_filter(project)}
    if tap_service:
        filters["tap_service_id"] = client.find_id("tap_service", tap_service)
    if port:
        filters["source_port"] = client.find_id("port", port)
    _list("tap_flow", client.list("tap_flow", **filters), fmt, columns)


add_show_update_delete(tap_flow, "tap_flow", updatable=False)


@tap_flow.command("update")
@click.argument("name_or_id")
@click.option("--name", default=None, help="New name.")
@click.option("--description", default=None, help="New description.")
@click.option("--filter", "tap_filter", default=None, help="Tap filter (name or id) to use.")
@click.option("--no-filter", is_flag=True, help="Copy every frame again (no tap filter).")
@limit_options(ALL, update=True)
@output_options
def tap_flow_update(name_or_id: str, name: str | None, description: str | None,
                    tap_filter: str | None, no_filter: bool, fmt: str,
                    columns: tuple[str, ...], **limits: Any) -> None:
    """Change a tap flow's name, description, tap filter, snaplen or rate limits."""
    if tap_filter and no_filter:
        raise click.UsageError("--filter and --no-filter exclude each other")
    client = _client()
    attrs: dict[str, Any] = {**_drop_none({"name": name, "description": description}),
                             **limit_attrs(limits)}
    if tap_filter:
        attrs["tap_filter_id"] = client.find_id("tap_filter", tap_filter)
    elif no_filter:
        attrs["tap_filter_id"] = None
    if not attrs:
        raise click.UsageError("nothing to update: give --name, --description, --filter, "
                               "--no-filter, --snaplen, --max-pps or --max-kbps")
    _show(client.update("tap_flow", client.find_id("tap_flow", name_or_id), attrs), fmt,
          columns)


@tap.group("filter")
def tap_filter() -> None:
    """Tap filters: ordered mirror/skip rules that tap flows name (--filter)."""


RULE_HELP = ("A rule: comma-separated key=value of priority (1-1000, unique), action "
             "(mirror|skip), direction (IN|OUT), ethertype (IPv4|IPv6), protocol "
             "(tcp|udp|icmp|icmpv6|0-255), source_ip_prefix, destination_ip_prefix, "
             "source_port_range, destination_port_range (N or N-M). Repeatable.")


def _parse_rules(values: Sequence[str]) -> list[dict[str, Any]]:
    rules = []
    for text in values:
        rule: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, eq, value = part.partition("=")
            if not eq or not key.strip():
                raise click.BadParameter(f"{part!r} is not key=value", param_hint="--rule")
            key, value = key.strip(), value.strip()
            rule[key] = int(value) if key == "priority" and value.isdigit() else value
        rules.append(rule)
    return rules


@tap_filter.command("create")
@click.option("--rule", "rules", multiple=True, help=RULE_HELP)
@click.option("--default-action", type=click.Choice(["mirror", "skip"]), default=None,
              help="What frames no rule matches get (server default: skip).")
@click.option("--name", default=None)
@click.option("--description", default=None)
@click.option("--project", default=None, help="Owning project (admin only).")
@output_options
def tap_filter_create(rules: tuple[str, ...], default_action: str | None, name: str | None,
                      description: str | None, project: str | None, fmt: str,
                      columns: tuple[str, ...]) -> None:
    """Create a tap filter."""
    attrs = _drop_none({"rules": _parse_rules(rules), "default_action": default_action,
                        "name": name, "description": description, "project_id": project})
    _show(_client().create("tap_filter", attrs), fmt, columns)


@tap_filter.command("list")
@list_options
def tap_filter_list(name: str | None, project: str | None, fmt: str,
                    columns: tuple[str, ...]) -> None:
    """List tap filters."""
    items = _client().list("tap_filter", name=name, **_project_filter(project))
    _list("tap_filter", items, fmt, columns)


@tap_filter.command("update")
@click.argument("name_or_id")
@click.option("--rule", "rules", multiple=True, help=RULE_HELP + " Replaces every rule.")
@click.option("--no-rules", is_flag=True, help="Remove every rule.")
@click.option("--default-action", type=click.Choice(["mirror", "skip"]), default=None)
@click.option("--name", default=None)
@click.option("--description", default=None)
@output_options
def tap_filter_update(name_or_id: str, rules: tuple[str, ...], no_rules: bool,
                      default_action: str | None, name: str | None, description: str | None,
                      fmt: str, columns: tuple[str, ...]) -> None:
    """Change a tap filter; the switches follow."""
    if rules and no_rules:
        raise click.UsageError("--rule and --no-rules exclude each other")
    attrs = _drop_none({"default_action": default_action, "name": name,
                        "description": description})
    if rules or no_rules:
        attrs["rules"] = _parse_rules(rules)
    if not attrs:
        raise click.UsageError("nothing to update")
    client = _client()
    _show(client.update("tap_filter", client.find_id("tap_filter", name_or_id), attrs), fmt,
          columns)


add_show_update_delete(tap_filter, "tap_filter", updatable=False)


@tap.group("mirror")
def tap_mirror() -> None:
    """Tap mirrors: a port's traffic sent to a remote IP in GRE or ERSPAN v1."""


def _parse_directions(values: Sequence[str]) -> dict[str, int | str]:
    directions: dict[str, int | str] = {}
    for v in values:
        key, sep, tunnel = v.partition("=")
        key = key.strip().upper()
        if not sep or key not in ("IN", "OUT", "BOTH") or not tunnel.strip():
            raise click.BadParameter(f"{v!r}: expected IN=ID, OUT=ID or BOTH=ID",
                                     param_hint="--directions")
        tunnel = tunnel.strip()
        directions[key] = int(tunnel) if tunnel.isdigit() else tunnel
    return directions


@tap_mirror.command("create")
@click.option("--port", required=True, help="Port whose traffic is mirrored.")
@click.option("--directions", "directions", multiple=True, required=True, metavar="DIR=TUNNEL",
              help="Direction and tunnel id, e.g. IN=102 (repeatable).")
@click.option("--remote-ip", required=True, help="Where the tunnel goes.")
@click.option("--mirror-type", required=True, metavar="[gre|erspanv1]",
              type=click.Choice(["gre", "erspanv1"],
              case_sensitive=False))
@click.option("--name", default=None)
@click.option("--description", default=None)
@click.option("--project", default=None, help="Owning project (admin only).")
@limit_options(ALL)
@output_options
def tap_mirror_create(port: str, directions: tuple[str, ...], remote_ip: str, mirror_type: str,
                      name: str | None, description: str | None, project: str | None,
                      fmt: str, columns: tuple[str, ...], **limits: Any) -> None:
    """Create a tap mirror (snaplen, max-pps, max-kbps: per direction)."""
    parsed = _parse_directions(directions)
    client = _client()
    attrs = _drop_none({
        "port_id": client.find_id("port", port), "directions": parsed, "remote_ip": remote_ip,
        "mirror_type": mirror_type.lower(), "name": name, "description": description,
        "project_id": project, **limit_attrs(limits),
    })
    _show(client.create("tap_mirror", attrs), fmt, columns)


@tap_mirror.command("list")
@click.option("--port", default=None, help="Only mirrors of this port.")
@list_options
def tap_mirror_list(port: str | None, name: str | None, project: str | None, fmt: str,
                    columns: tuple[str, ...]) -> None:
    """List tap mirrors."""
    client = _client()
    filters: dict[str, Any] = {"name": name, **_project_filter(project)}
    if port:
        filters["port_id"] = client.find_id("port", port)
    _list("tap_mirror", client.list("tap_mirror", **filters), fmt, columns)


add_show_update_delete(tap_mirror, "tap_mirror", updatable=True, limits=ALL)


# -- the built-in port inventory -----------------------------------------------------------------


@cli.group()
def network() -> None:
    """Networks of the server's built-in inventory."""


@network.command("create")
@click.argument("name")
@click.option("--segmentation-id", type=int, default=None, help="Tenant VNI.")
@click.option("--project", default=None, help="Owning project (admin only).")
@click.option("--id", "network_id", default=None, help="Choose the network's id.")
@click.option("--description", default=None)
@output_options
def network_create(name: str, segmentation_id: int | None, project: str | None,
                   network_id: str | None, description: str | None, fmt: str,
                   columns: tuple[str, ...]) -> None:
    """Create a network."""
    attrs = _drop_none({"name": name, "provider:segmentation_id": segmentation_id,
                        "project_id": project, "id": network_id, "description": description})
    if segmentation_id is not None:
        attrs["provider:network_type"] = "vxlan"
    _show(_client().create("network", attrs), fmt, columns)


@network.command("list")
@list_options
def network_list(name: str | None, project: str | None, fmt: str,
                 columns: tuple[str, ...]) -> None:
    """List networks."""
    _list("network", _client().list("network", name=name, **_project_filter(project)), fmt,
          columns)


add_show_update_delete(network, "network", updatable=False)


@cli.group()
def port() -> None:
    """Ports of the server's built-in inventory."""


@port.command("create")
@click.argument("name")
@click.option("--network", "network_ref", required=True, help="Network, name or id.")
@click.option("--mac-address", default=None)
@click.option("--project", default=None, help="Owning project (admin only).")
@click.option("--id", "port_id", default=None, help="Choose the port's id.")
@click.option("--host", default=None, help="Bind the port to this host (binding:host_id).")
@click.option("--description", default=None)
@output_options
def port_create(name: str, network_ref: str, mac_address: str | None, project: str | None,
                port_id: str | None, host: str | None, description: str | None, fmt: str,
                columns: tuple[str, ...]) -> None:
    """Create a port."""
    client = _client()
    attrs = _drop_none({"name": name, "network_id": client.find_id("network", network_ref),
                        "mac_address": mac_address, "project_id": project, "id": port_id,
                        "binding:host_id": host, "description": description})
    _show(client.create("port", attrs), fmt, columns)


@port.command("list")
@click.option("--network", "network_ref", default=None, help="Only ports of this network.")
@click.option("--host", default=None, help="Only ports bound to this host.")
@list_options
def port_list(network_ref: str | None, host: str | None, name: str | None,
              project: str | None, fmt: str, columns: tuple[str, ...]) -> None:
    """List ports."""
    client = _client()
    filters: dict[str, Any] = {"name": name, "binding:host_id": host,
                               **_project_filter(project)}
    if network_ref:
        filters["network_id"] = client.find_id("network", network_ref)
    _list("port", client.list("port", **filters), fmt, columns)


add_show_update_delete(port, "port", updatable=False)


@cli.group()
def agent() -> None:
    """taas agents (one per hypervisor)."""


@agent.command("list")
@click.option("--host", default=None, help="Only the agent of this host.")
@output_options
def agent_list(host: str | None, fmt: str, columns: tuple[str, ...]) -> None:
    """List agents, their tunnel IPs and liveness."""
    _list("agent", _client().list("agent", host=host), fmt, columns)


add_show_update_delete(agent, "agent", updatable=False)


def main() -> None:
    cli(prog_name="taas")


if __name__ == "__main__":
    main()
