"""What can be wrong with a packet. ``str(err)`` of each is the dead letter's reason: what is wrong, and
what to do about it."""

from __future__ import annotations


class PacketError(ValueError):
    """A packet that cannot be used. ``str(err)`` is the dead letter's reason: what is wrong and what to do."""


class NotAvroError(PacketError):
    """The bytes are not an Avro container at all."""


class TruncatedAvroError(PacketError):
    """An Avro container that ends before its own structure says it should."""


class CorruptAvroError(PacketError):
    """An Avro container whose bytes do not decode against its own writer schema."""


class UnknownSchemaError(PacketError):
    """A well-formed container whose records are not alerts of any survey we can map."""


class MissingFieldError(PacketError):
    """An alert without one of the fields every alert must carry."""


class InvalidValueError(PacketError):
    """An alert whose field holds a value the model cannot take."""


class ImplausibleValueError(InvalidValueError):
    """An alert whose own detection holds a value that decodes but cannot be physical (a magnitude of 99, a
    declination of 120, a time outside the survey's era): docs/input-validation.md."""


class OversizeError(PacketError):
    """A packet, a writer schema, a decompressed block or a history array over the documented size limits
    (docs/input-validation.md): not decoded further, so a hostile packet cannot exhaust memory or time."""
