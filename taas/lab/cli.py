"""`taas lab ...`: build, inspect and remove labs (click group `lab`, registered by taas.cli)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click

from taas.common import prereqs
from taas.lab import Lab, default_state_file, destroy, destroy_all, list_labs
from taas.lab.sh import LabCommandError


def _default_name() -> str:
    """'lab', or the only lab on the machine when there is exactly one."""
    names = list_labs()
    return names[0] if len(names) == 1 else "lab"


def _strip(cmd: tuple[str, ...]) -> list[str]:
    args = list(cmd)
    if args and args[0] == "--":
        args = args[1:]
    if not args:
        raise click.UsageError("no command given")
    return args


def _load(state: str | None, name: str | None) -> Lab:
    sf = Path(state) if state else default_state_file(name or _default_name())
    if not sf.exists():
        raise click.ClickException(f"no lab state file {sf} (is the lab up? --state/--name)")
    return Lab.load(sf)


state_opt = click.option("--state", "state", type=click.Path(dir_okay=False), default=None,
                         help="State file (default /tmp/taas-lab-<name>/state.json).")
name_opt = click.option("--name", default=None,
                        help="Lab name (default 'lab', or the only lab on this machine).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def lab() -> None:
    """A multi-host OVS cloud on this machine (namespaces, one OVS per host, VXLAN)."""


@lab.command()
@click.option("--spec", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Lab spec (YAML or JSON); default: the shipped two-host spec.")
@click.option("--hosts", type=int, default=None, help="Spread the layout over N hosts.")
@state_opt
@click.option("--name", default="lab", show_default=True, help="Lab name ([a-z0-9_], <=12).")
@click.option("--server", default=None, help="taas-server URL: register networks and ports.")
@click.option("--token", default=None, help="Admin token for --server.")
@click.option("--no-agents", is_flag=True, help="With --server: do not start taas-agents.")
@click.option("--neutron", is_flag=True,
              help="A real cloud: Keystone, neutron-server (with the TaaS plugin), "
                   "neutron-openvswitch-agents, its own taas-server (Neutron port backend) and "
                   "taas-agents; <lab dir>/clouds.yaml for openstack clients (docs/neutron.md).")
@click.option("--json", "as_json", is_flag=True, help="Print the state file.")
def up(spec: str | None, hosts: int | None, state: str | None, name: str, server: str | None,
       token: str | None, no_agents: bool, neutron: bool, as_json: bool) -> None:
    """Build a lab (replaces leftovers of a lab with the same name)."""
    if server and not token:
        raise click.UsageError("--server needs --token")
    if neutron and server:
        raise click.UsageError("--neutron starts its own taas-server: no --server")
    log = lambda m: click.echo(m, err=True)  # noqa: E731
    try:  # checks the prerequisites before it touches anything
        if neutron:
            from taas.lab.neutron import up as neutron_up

            lb = neutron_up(spec, name, hosts=hosts, state_file=state, agents=not no_agents,
                            log=log)
        else:
            lb = Lab.up(spec, name, hosts=hosts, state_file=state, server=server, token=token,
                        agents=not no_agents, log=log)
    except prereqs.MissingPrerequisites as e:
        click.echo(str(e), err=True)
        sys.exit(2)
    except (LabCommandError, ValueError, RuntimeError) as e:
        raise click.ClickException(str(e)) from e
    click.echo(json.dumps(lb.state, indent=2) if as_json else lb.status())


@lab.command()
@state_opt
@click.option("--name", default=None, help="Lab name (default: from --state, else 'lab').")
@click.option("--all", "all_", is_flag=True, help="Remove every taas lab on this machine.")
def down(state: str | None, name: str | None, all_: bool) -> None:
    """Remove a lab: daemons, agents, namespaces, veths, run dirs (also after a crash)."""
    if all_:
        names = destroy_all()
        click.echo("removed: " + (" ".join(names) if names else "(none)"))
        return
    if state and Path(state).exists():
        Lab.load(state).down()
        return
    destroy(name or _default_name())


@lab.command()
@state_opt
@name_opt
@click.option("--json", "as_json", is_flag=True)
def status(state: str | None, name: str | None, as_json: bool) -> None:
    """Hosts, VMs, ports, bridges of a lab."""
    lb = _load(state, name)
    click.echo(json.dumps(lb.state, indent=2) if as_json else lb.status())


@lab.command("list")
def list_() -> None:
    """Names of the labs on this machine."""
    for n in list_labs():
        click.echo(n)


@lab.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@state_opt
@name_opt
@click.argument("target")
@click.argument("cmd", nargs=-1, type=click.UNPROCESSED, required=True)
def exec(state: str | None, name: str | None, target: str, cmd: tuple[str, ...]) -> None:  # noqa: A001
    """Run CMD in the namespace of a VM (or host, collector, 'fabric'): lab exec vm1 -- ping .."""
    lb = _load(state, name)
    args = ["ip", "netns", "exec", lb.netns_of(target), *_strip(cmd)]
    sys.exit(subprocess.call(args))


@lab.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@state_opt
@name_opt
@click.argument("host")
@click.argument("cmd", nargs=-1, type=click.UNPROCESSED, required=True)
def ovs(state: str | None, name: str | None, host: str, cmd: tuple[str, ...]) -> None:
    """Run ovs-vsctl / ovs-ofctl / ovs-appctl against HOST's OVS:
    lab ovs host1 -- ovs-ofctl dump-flows br-tun"""
    lb = _load(state, name)
    try:
        args = lb.ovs_args(host, _strip(cmd))
    except KeyError as e:
        raise click.ClickException(str(e)) from e
    sys.exit(subprocess.call(args))


if __name__ == "__main__":
    lab()
