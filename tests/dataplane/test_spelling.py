"""The start-up probe: OVS dumps taas's flows exactly as the compiler spells them, and when it
does not (an OVS upgrade, an unusual --continuation), flows compare in OVS's own spelling."""

from __future__ import annotations

import logging

import pytest
from taasdp import Taas, local_ports

from taas.agent.ovs import tables as T
from taas.agent.ovs.driver import OvsDriver
from taas.lab import Lab

pytestmark = pytest.mark.ovs


def test_ovs_dumps_the_compilers_vocabulary_exactly_and_the_probe_leaves_nothing(
        lab: Lab, taas: Taas) -> None:
    drv = taas.drivers[lab.hosts[0].name]
    before = {br: of.dump() for br, of in drv.of.items()}
    assert drv.probe_spelling() == []
    assert {br: of.dump() for br, of in drv.of.items()} == before
    assert drv.of["tap"].dump(T.PROBE_TABLE) == set()


def test_a_spelling_mismatch_is_logged_and_flows_compare_in_ovs_spelling(
        lab: Lab, taas: Taas, caplog: pytest.LogCaptureFixture) -> None:
    """--continuation normal: OVS dumps NORMAL. Compared as text, every hooked flow would be
    deleted and re-added by each verify; compared in OVS's spelling, nothing is."""
    mon_host = lab.vm("mon").host
    src = next(v.name for v in lab.vms_on(mon_host) if v.name != "mon")
    taas.service("S1", "mon", 3901)
    taas.flow("f1", "S1", src, "BOTH")
    h = lab.host(mon_host)
    taas.drivers[mon_host].close()
    drv = taas.drivers[mon_host] = OvsDriver(h.ovsdb, h.run_dir, h.name, h.tunnel_ip,
                                             continuation="normal")
    caplog.set_level(logging.WARNING, logger="taas.agent.ovs.driver")
    state, ports = taas.state(mon_host), local_ports(lab, mon_host)
    first = drv.sync(state, ports, verify=True)
    assert first.added > 0
    assert any("differently than the compiler writes them" in r.getMessage()
               and "normal" in r.getMessage() for r in caplog.records)
    hooks = [f for f in drv.of["int"].dump() if f.priority == T.PRIO_HOOK]
    assert hooks and all(f.actions.endswith(",NORMAL") for f in hooks)
    for _ in range(2):
        again = drv.sync(state, ports, verify=True)
        assert (again.added, again.removed) == (0, 0)
    assert {s.status for s in again.statuses} == {"ACTIVE"}
