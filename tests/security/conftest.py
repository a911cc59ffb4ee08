"""The security suite reuses the API harness (tests/api/conftest.py): the real app over
real HTTP, a real registry, the session's InfluxDB and the fake Twilio."""

# Fixtures are found by name in a conftest's namespace: importing them is how they are
# shared between folders (pytest has no other cross-folder mechanism short of a plugin).
from tests.api.conftest import api, clock, paged, twilio  # noqa: F401
