"""The log's errors: each one line that names the thing and the fix."""
from schemas.errors import TapeError


class StoreError(TapeError):
    """The store URL or path cannot be used."""


class NoNamespace(StoreError):
    """The store holds no namespace of that name."""


class NamespaceBeingCreated(StoreError):
    """A Kafka namespace whose topics exist but not yet its metadata record: its first writer is creating it, or
    was killed doing so (the next writer finishes it)."""


class LockedNamespace(TapeError):
    """A second writer tried to open a namespace that has one."""


class CorruptLog(TapeError):
    """Bytes in the log fail their checksum or framing away from the tail."""


class UnknownSchema(TapeError):
    """A record names a schema fingerprint the registry does not hold."""


class SchemaError(TapeError):
    """A schema file is invalid or an event does not match its schema."""


class IncompatibleSchema(TapeError):
    """A schema change would break reading of events already written."""
