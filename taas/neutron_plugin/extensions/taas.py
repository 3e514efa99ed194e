"""Extension `taas`: tap services and tap flows under /v2.0/taas (neutron-lib's definition)."""

from neutron.api.v2 import resource_helper
from neutron_lib.api import extensions
from neutron_lib.api.definitions import taas as api_def

PLUGIN_TYPE = "TAAS"


class Taas(extensions.APIExtensionDescriptor):
    api_definition = api_def

    @classmethod
    def get_resources(cls):  # type: ignore[no-untyped-def]
        plural = resource_helper.build_plural_mappings({}, api_def.RESOURCE_ATTRIBUTE_MAP)
        return resource_helper.build_resource_info(
            plural, api_def.RESOURCE_ATTRIBUTE_MAP, PLUGIN_TYPE, translate_name=False,
            allow_bulk=False)
