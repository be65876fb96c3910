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
