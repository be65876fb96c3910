"""Credentials that must never be shown: a string whose ``repr`` is masked, and the redaction of text.

Where secrets come from and where they must not go: docs/guarantees.md ("Credentials"). The settings
(``pipeline.config``) wrap every secret value (the PostgreSQL DSN, S3 keys, Kafka SASL/SSL passwords) in
``Secret`` and register it here, so that

- ``repr`` of anything holding one (a settings object, a task's arguments that Dask logs when the task fails, a
  storage-options tuple) shows ``'***'``, while the value itself still works wherever a ``str`` is wanted;
- ``redact(text)`` replaces every registered secret, as well as passwords in URLs/DSNs
  (``scheme://user:PASSWORD@host``) and ``password=...``-style values, with ``***``. Error messages, log
  lines and reports that may quote a DSN or URL go through it.

This module is at the storage layer so that storage (PostgreSQL, the embedded server) and everything above it
can redact; it imports nothing of the project.
"""

from __future__ import annotations

import re
import threading

MASK = "***"
#: Secrets shorter than this are not replaced in free text (they would blank out ordinary words); URL and
#: ``password=`` forms are still masked.
MIN_REGISTERED = 4

_SECRET_IN_URL = re.compile(r"(://[^:/@\s]+:)([^@\s]+)(@)")
_SECRET_PARAM = re.compile(
    r"(?i)\b(password|passwd|pwd|secret|token|sasl\.password|ssl\.key\.password|aws_secret_access_key"
    r"|secret_access_key)(\s*[=:]\s*)(['\"]?)([^\s'\",;]+)"
)
_lock = threading.Lock()
_registered: set[str] = set()


class Secret(str):
    """A credential: a ``str`` in every use, whose ``repr`` is ``'***'`` (so containers of it print masked)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(MASK)

    def __reduce__(self):  # pickled (to Dask workers) as a Secret, still masked there
        return (Secret, (str(self),))


def register(value: str) -> None:
    """Remember a secret value so that ``redact`` removes it from any text."""
    if value and len(value) >= MIN_REGISTERED:
        with _lock:
            _registered.add(str(value))


def registered() -> frozenset[str]:
    with _lock:
        return frozenset(_registered)


def secret(value: str) -> str:
    """``value`` as a registered ``Secret`` (an empty value stays an empty ``str``)."""
    if not value:
        return value
    register(value)
    return value if isinstance(value, Secret) else Secret(value)


def redact(text: str) -> str:
    """``text`` with every registered secret, the passwords of URLs/DSNs and ``password=...``-style values
    replaced by ``***`` (for logs, reports and error messages)."""
    text = str(text)
    for value in sorted(registered(), key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    text = _SECRET_IN_URL.sub(rf"\1{MASK}\3", text)
    return _SECRET_PARAM.sub(rf"\1\2\3{MASK}", text)


def password_of(dsn: str) -> str | None:
    """The password a PostgreSQL DSN (URL or ``key=value`` form) carries, if any."""
    m = re.search(r"://[^:/@\s]+:([^@\s]*)@", dsn)
    if m and m.group(1):
        return m.group(1)
    m = re.search(r"(?:^|\s)password\s*=\s*(?:'((?:[^'\\]|\\.)*)'|(\S+))", dsn)
    if m:
        return m.group(1) if m.group(1) is not None else m.group(2)
    m = re.search(r"[?&]password=([^&\s]+)", dsn)
    return m.group(1) if m else None
