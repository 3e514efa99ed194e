"""The lab: a real multi-host OVS cloud on one machine (see docs/lab.md)."""

from taas.lab.capture import Capture, parse_pcap
from taas.lab.cleanup import destroy, destroy_all, list_labs
from taas.lab.core import Lab
from taas.lab.state import (
    L2_COOKIE,
    UNDERLAY_MTU,
    VM,
    Collector,
    Host,
    Network,
    default_state_file,
    lab_dir,
)
from taas.lab.traffic import PingResult

__all__ = ["Capture", "Collector", "Host", "L2_COOKIE", "Lab", "Network", "PingResult",
           "UNDERLAY_MTU", "VM", "default_state_file", "destroy", "destroy_all", "lab_dir",
           "list_labs", "parse_pcap"]
