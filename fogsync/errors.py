"""The exception family. Every error a user can meet is a FogsyncError.

Lower layers raise these with a message that says what and where; the CLI
prints ``fogsync: error: <message>`` and exits 1. Backends translate their
own exceptions (OSError, botocore errors) into these at their boundary.
"""


class FogsyncError(Exception):
    """Base of every error FogSync reports to a user."""


class ConfigError(FogsyncError):
    """Bad configuration or bad user input (key text, share name, path)."""


class IntegrityError(FogsyncError):
    """Stored data failed verification: wrong key, tampered or garbled blob."""


class FormatError(IntegrityError):
    """A verified blob holds something this implementation cannot read."""


class StoreError(FogsyncError):
    """The store could not be reached or refused an operation."""


class TransientStoreError(StoreError):
    """The store failed for a cause that may pass (a dropped connection, a 503, a body cut off): worth retrying."""


class ObjectNotFound(StoreError):
    """A key the caller expected is not in the store."""


class SwapConflict(StoreError):
    """A compare-and-swap lost: the object changed since it was read."""


class LocalError(FogsyncError):
    """The local side failed: a file could not be read or written."""


class Refusal(FogsyncError):
    """A pass refused a share that looks harmed, touching nothing; the message says why and what to run."""

    retries_alone = False  # the daemon holds the share until asked (``sync NAME`` with the flag named) or restarted


class ListingMismatch(IntegrityError):
    """A blob verified, but its content is not what its listing entry declares (size or sha256)."""
