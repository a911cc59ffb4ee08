"""The exception tree shared by coldchain packages.

    ColdchainError
    ├── ConfigError            bad settings or chain file; fail at start-up, name the field
    ├── RegistryError          a registry operation that cannot be done (unknown id, conflict)
    │   └── NotFound
    └── InfluxError            a write or query that did not succeed; never carries secrets
        ├── InfluxRejected     4xx on points: the data is bad; dead-letter, do not retry
        ├── InfluxTooLarge     413: split the batch and retry the halves
        ├── InfluxUnavailable  429, 5xx, timeouts, refused connections: spool and retry
        └── InfluxConfigError  401/403/404 database: operator must fix; spool and alert

Device families raise ``devices.DecodeError`` (not a ColdchainError: it is data, not code).
"""

from __future__ import annotations


class ColdchainError(Exception):
    """Base of every coldchain-specific error."""


class ConfigError(ColdchainError):
    """Configuration that cannot work; the message names the setting."""


class RegistryError(ColdchainError):
    """A registry operation that cannot be done."""


class NotFound(RegistryError):
    """The id does not exist in the registry."""


class InfluxError(ColdchainError):
    """An InfluxDB request that did not succeed."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class InfluxRejected(InfluxError):
    """InfluxDB refused the points themselves (bad line, field type conflict)."""


class InfluxTooLarge(InfluxError):
    """The request body was too large (HTTP 413)."""


class InfluxUnavailable(InfluxError):
    """Throttled, server error, timeout or unreachable: retry later."""

    def __init__(
        self, message: str, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status)
        self.retry_after = retry_after


class InfluxConfigError(InfluxError):
    """Authentication, authorisation or missing database: an operator must act."""
