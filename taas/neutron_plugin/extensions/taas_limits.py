"""Extension `taas-limits`: taas-server's per-resource limits (`snaplen`, `max_pps`,
`max_kbps`) and read-only `statistics` on tap services, tap flows and tap mirrors. Without a
declaration Neutron strips these attributes from answers and refuses them in bodies. Neutron
validates nothing in them: taas-server does, so its errors are the same as directly."""

from neutron_lib.api import extensions

ALIAS = "taas-limits"


def _limit() -> dict:
    return {"allow_post": True, "allow_put": True, "is_visible": True, "default": None}


STATISTICS = {"allow_post": False, "allow_put": False, "is_visible": True}
ATTRIBUTES = {
    "tap_services": {"max_pps": _limit(), "max_kbps": _limit(), "statistics": STATISTICS},
    "tap_flows": {"snaplen": _limit(), "max_pps": _limit(), "max_kbps": _limit(),
                  "statistics": STATISTICS},
    "tap_mirrors": {"snaplen": _limit(), "max_pps": _limit(), "max_kbps": _limit(),
                    "statistics": STATISTICS},
}


class Taas_limits(extensions.ExtensionDescriptor):  # noqa: N801 - neutron's naming rule
    @classmethod
    def get_name(cls) -> str:
        return "Tap-as-a-Service limits and statistics"

    @classmethod
    def get_alias(cls) -> str:
        return ALIAS

    @classmethod
    def get_description(cls) -> str:
        return "snaplen, max_pps and max_kbps of tap resources, and their counters."

    @classmethod
    def get_updated(cls) -> str:
        return "2026-12-01T00:00:00-00:00"

    def get_required_extensions(self) -> list[str]:
        return ["taas", "tap-mirror"]

    def get_extended_resources(self, version: str) -> dict:
        return ATTRIBUTES if version == "2.0" else {}
