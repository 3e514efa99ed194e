"""Extension `tap-mirror`: tap mirrors (GRE / ERSPAN v1) under /v2.0/taas. neutron-lib 3.1
(Zed) has no definition of it yet, so it is declared here, with the same attributes as the
upstream one."""

from neutron.api.v2 import resource_helper
from neutron_lib.api import extensions

ALIAS = "tap-mirror"
COLLECTION = "tap_mirrors"
ATTRIBUTES = {
    COLLECTION: {
        "id": {"allow_post": False, "allow_put": False, "validate": {"type:uuid": None},
               "is_visible": True, "primary_key": True},
        "tenant_id": {"allow_post": True, "allow_put": False,
                      "validate": {"type:string": None}, "required_by_policy": True,
                      "is_visible": True},
        "name": {"allow_post": True, "allow_put": True, "validate": {"type:string": None},
                 "is_visible": True, "default": ""},
        "description": {"allow_post": True, "allow_put": True,
                        "validate": {"type:string": None}, "is_visible": True, "default": ""},
        "port_id": {"allow_post": True, "allow_put": False, "validate": {"type:uuid": None},
                    "is_visible": True},
        "directions": {"allow_post": True, "allow_put": False,
                       "validate": {"type:dict": None}, "is_visible": True},
        "remote_ip": {"allow_post": True, "allow_put": False,
                      "validate": {"type:ip_address": None}, "is_visible": True},
        "mirror_type": {"allow_post": True, "allow_put": False,
                        "validate": {"type:values": ["erspanv1", "gre"]}, "is_visible": True},
        "status": {"allow_post": False, "allow_put": False, "is_visible": True},
    }
}


class Tap_mirror(extensions.ExtensionDescriptor):  # noqa: N801 - neutron's naming rule
    @classmethod
    def get_name(cls) -> str:
        return "Tap as a Service GRE/ERSPAN mirroring"

    @classmethod
    def get_alias(cls) -> str:
        return ALIAS

    @classmethod
    def get_description(cls) -> str:
        return "Mirror a port's traffic to a remote IP in GRE or ERSPAN v1."

    @classmethod
    def get_updated(cls) -> str:
        return "2023-05-05T00:00:00-00:00"

    @classmethod
    def get_resources(cls):  # type: ignore[no-untyped-def]
        plural = resource_helper.build_plural_mappings({}, ATTRIBUTES)
        return resource_helper.build_resource_info(plural, ATTRIBUTES, "TAAS",
                                                   translate_name=False, allow_bulk=False)

    def get_extended_resources(self, version: str) -> dict:
        return ATTRIBUTES if version == "2.0" else {}
