"""Extension `taas-vlan-filter`: the `vlan_filter` attribute of tap flows (neutron-lib's)."""

from neutron_lib.api import extensions
from neutron_lib.api.definitions import vlan_filter as api_def


class Vlan_filter(extensions.APIExtensionDescriptor):  # noqa: N801 - neutron's naming rule
    api_definition = api_def
