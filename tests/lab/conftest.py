"""The lab's own tests use the fixtures of taas.lab.pytest_plugin."""

from taas.lab.pytest_plugin import (  # noqa: F401
    fresh_lab,
    lab,
    lab_factory,
    lab_reaper,
    lab_session,
)
