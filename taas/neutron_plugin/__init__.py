"""A thin Neutron service plugin: neutron-server answers /v2.0/taas/... and hands every call to
taas-server (docs/neutron.md, "The Neutron entry point"). It runs inside neutron-server, on that
Python (Debian's, with neutron installed): it imports nothing of taas but this package, and
only the standard library, requests and neutron itself.
"""
