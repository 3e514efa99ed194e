"""The lab: a real multi-host OVS cloud on one machine (see docs/lab.md)."""

from taas.lab.capture import Capture, parse_pcap
from taas.lab.core import (
    L2_COOKIE,
    VM,
    Collector,
    Host,
    Lab,
    Network,
    PingResult,
    default_state_file,
    destroy,
    destroy_all,
    list_labs,
)

__all__ = ["Capture", "Collector", "Host", "L2_COOKIE", "Lab", "Network", "PingResult", "VM",
           "default_state_file", "destroy", "destroy_all", "list_labs", "parse_pcap"]
