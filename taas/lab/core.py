"""The lab: a multi-host Neutron-like OVS cloud on one machine, built from network namespaces.

Layout (names for a lab called NAME; see docs/lab.md):

- lab dir `/tmp/taas-lab-NAME/` (state.json, one run dir per host, captures);
- fabric namespace `tlab-NAME-fabric` with Linux bridge `fab0`: the underlay;
- per host: namespace `tlab-NAME-HOST`, own ovsdb-server + ovs-vswitchd (run dir
  `/tmp/taas-lab-NAME/HOST/`), bridges br-int / br-tun / br-phy (all datapath_type=netdev),
  underlay veth `phy0` (fabric end `h<index>`), tunnel IP on br-phy;
- per VM: namespace `tlab-NAME-VM`, veth `eth0` <-> `tap<port id[:11]>` on the host's br-int;
- per collector: namespace `tlab-NAME-COL`, veth `eth0` <-> `c<index>` on the fabric.

`Lab` puts the parts together; each lives in its own module: state.py (names, paths, state
file, views), handle.py (lookups, commands in namespaces), builder.py, traffic.py,
capture.py, registration.py, agents.py, reset.py, status.py, cleanup.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from taas.common import prereqs
from taas.lab import cleanup
from taas.lab import spec as specmod
from taas.lab.builder import Builder
from taas.lab.capture import CaptureMixin
from taas.lab.cleanup import destroy
from taas.lab.registration import RegistrationMixin
from taas.lab.reset import ResetMixin
from taas.lab.state import default_state_file, initial_state, read_state
from taas.lab.status import StatusMixin
from taas.lab.traffic import TrafficMixin


class Lab(TrafficMixin, CaptureMixin, RegistrationMixin, ResetMixin, StatusMixin):
    """A running lab, described by its state file. Build with `Lab.up()`, attach with
    `Lab.load()`, remove with `lab.down()`."""

    @classmethod
    def up(cls, spec: str | Path | dict[str, Any] | None = None, name: str = "lab", *,
           hosts: int | None = None, state_file: str | Path | None = None,
           server: str | None = None, token: str | None = None, agents: bool = True,
           agent_args: Sequence[str] = (), autoclean: bool = False,
           log: Callable[[str], None] | None = None) -> Lab:
        """Build a lab. `spec`: dict, YAML/JSON path, or None for the default spec;
        `hosts`: spread the layout over N hosts; `server`+`token`: register networks/ports in
        that taas-server and (if `agents`) start one taas-agent per host; `autoclean`: tear the
        lab down when this Python process exits (tests; not the CLI, whose lab outlives it).
        Raises MissingPrerequisites (before touching anything) if a tool the lab runs is
        missing."""
        prereqs.require("taas lab")
        specmod.check_name(name)
        if server and not token:
            raise ValueError("a server needs a token")
        data = specmod.load_spec(spec)
        if hosts is not None:
            data = specmod.spread(data, hosts)
        destroy(name)  # leftovers of an earlier lab with this name (crashed creator)
        plan = specmod.resolve(data, name, cleanup.underlays_in_use())
        sf = Path(state_file) if state_file else default_state_file(name)
        lab = cls(initial_state(plan, sf), sf)
        if autoclean:
            cleanup.remember(name, lab.down)
        try:
            Builder(lab.state, plan, lab.save, log or (lambda _m: None)).build()
            lab.save()
            if server and token:
                lab.register(server, token)
                if agents:
                    lab.start_agents(server, token, extra_args=agent_args)
        except BaseException:
            lab.down()
            raise
        return lab

    @classmethod
    def load(cls, state_file: str | Path | None = None, name: str | None = None) -> Lab:
        sf = Path(state_file) if state_file else default_state_file(name or "lab")
        return cls(read_state(sf), sf)

    def down(self) -> None:
        """Remove everything this lab made (also what a crashed build left)."""
        destroy(self.name, self.state)
        with contextlib.suppress(OSError):
            self.state_file.unlink()
        cleanup.forget(self.name)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()


__all__ = ["Lab"]  # the other public names: `from taas.lab import ...`
