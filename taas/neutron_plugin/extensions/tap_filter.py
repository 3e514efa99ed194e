"""Extension `taas-tap-filter` (taas-server's alias): tap filters under /v2.0/taas and the
`tap_filter_id` attribute of tap flows. Declared here (no upstream definition). Neutron
validates nothing in them beyond their presence: taas-server does, so its errors are the same
through neutron-server as directly."""

from neutron.api.v2 import resource_helper
from neutron_lib.api import extensions

ALIAS = "taas-tap-filter"
COLLECTION = "tap_filters"
RESOURCES = {
    COLLECTION: {
        "id": {"allow_post": False, "allow_put": False, "validate": {"type:uuid": None},
               "is_visible": True, "primary_key": True},
        "tenant_id": {"allow_post": True, "allow_put": False,
                      "validate": {"type:string": None}, "required_by_policy": True,
                      "is_visible": True},
        "name": {"allow_post": True, "allow_put": True, "is_visible": True, "default": ""},
        "description": {"allow_post": True, "allow_put": True, "is_visible": True,
                        "default": ""},
        "default_action": {"allow_post": True, "allow_put": True, "is_visible": True,
                           "default": "skip"},
        "rules": {"allow_post": True, "allow_put": True, "is_visible": True, "default": []},
    }
}
FLOW_ATTRIBUTES = {
    "tap_flows": {
        "tap_filter_id": {"allow_post": True, "allow_put": True, "is_visible": True,
                          "default": None},
    }
}


class Tap_filter(extensions.ExtensionDescriptor):  # noqa: N801 - neutron's naming rule
    @classmethod
    def get_name(cls) -> str:
        return "Tap filters"

    @classmethod
    def get_alias(cls) -> str:
        return ALIAS

    @classmethod
    def get_description(cls) -> str:
        return "Rules (protocol, addresses, ports, direction) deciding which frames of a tap " \
               "flow are copied."

    @classmethod
    def get_updated(cls) -> str:
        return "2026-12-01T00:00:00-00:00"

    def get_required_extensions(self) -> list[str]:
        return ["taas"]

    @classmethod
    def get_resources(cls):  # type: ignore[no-untyped-def]
        plural = resource_helper.build_plural_mappings({}, RESOURCES)
        return resource_helper.build_resource_info(plural, RESOURCES, "TAAS",
                                                   translate_name=False, allow_bulk=False)

    def get_extended_resources(self, version: str) -> dict:
        return {**RESOURCES, **FLOW_ATTRIBUTES} if version == "2.0" else {}
