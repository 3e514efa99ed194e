"""The lab's own tests use the fixtures of taas.lab.pytest_plugin."""

from taas.lab.pytest_plugin import fresh_lab, lab, lab_factory, lab_session  # noqa: F401
