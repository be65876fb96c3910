"""Logging for the driver and the workers: one logger per module, a level, and a JSON format for clusters.

Terminals get short human lines (the progress bar and the night summary stay on stdout); ``--log-format json``
writes one JSON object per line (time, level, logger, message, and any ``extra`` fields), which log collectors
on Kubernetes index without parsing. Workers get the same configuration from the worker plugin.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable

from alert_broker.storage.secrets import redact

#: The package's root logger: every module logs under it (``logging.getLogger(__name__)``).
ROOT = "alert_broker"
FORMATS = ("text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Attributes every LogRecord has; anything else on a record came from ``extra=`` and goes into the JSON line.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, extras."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str = "INFO", fmt: str = "text", stream=None) -> logging.Logger:
    """Set up the package's logger (idempotent: a second call replaces the handler it installed)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: expected one of {', '.join(FORMATS)}")
    level = level.upper()
    if level not in LEVELS:
        raise ValueError(f"log level {level!r}: expected one of {', '.join(LEVELS)}")
    logger = logging.getLogger(ROOT)
    for handler in list(logger.handlers):
        if getattr(handler, "_alert_broker", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._alert_broker = True  # type: ignore[attr-defined]
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger


class RepeatFilter(logging.Filter):
    """Lets a message through once per ``window_s`` and counts the repeats in between.

    Why: a client library that retries a lost connection logs every attempt (librdkafka: ~20 identical lines a
    second per client while a broker is down), which buries everything else in a night's log. The first line of
    each kind passes; repeats within the window are dropped and counted, and the next one that passes after the
    window says how many were dropped (``repeated`` in the JSON line). ``key`` maps a message to its kind (by
    default the message itself). Every message is also redacted (storage/secrets.py): a client library may
    quote its settings."""

    def __init__(
        self,
        window_s: float = 30.0,
        key: Callable[[str], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.window_s = window_s
        self._key = key or (lambda message: message)
        self._clock = clock
        # kind -> (last passed, dropped since, the last dropped line)
        self._seen: dict[tuple[str, int, str], tuple[float, int, str]] = {}
        self._flushing = False

    def filter(self, record: logging.LogRecord) -> bool:
        if self._flushing:
            return True
        message = redact(record.getMessage())
        kind = (record.name, record.levelno, self._key(message))
        now = self._clock()
        last = self._seen.get(kind)
        if last is not None and now - last[0] < self.window_s:
            self._seen[kind] = (last[0], last[1] + 1, message)
            return False
        if len(self._seen) > 1000:  # a long night with ever-new messages: forget the old kinds
            self._seen.clear()
        record.msg, record.args = message, ()
        if last is not None and last[1]:
            record.repeated = last[1]
            record.msg = f"{message} ({last[1]} more like it in the {now - last[0]:.0f} s before, not shown)"
        self._seen[kind] = (now, 0, message)
        return True

    def flush(self) -> int:
        """Log each kind whose repeats were dropped since it last passed, once, with their count: the end of a
        burst (an outage that ended, a run that stops) is otherwise never counted, since the count rides on the
        next line of its kind. Returns how many lines it logged."""
        now = self._clock()
        pending = [(kind, seen) for kind, seen in self._seen.items() if seen[1]]
        self._flushing = True
        try:
            for (name, level, _), (since, dropped, message) in pending:
                logging.getLogger(name).log(
                    level,
                    "%s (%d more like it in the %.0f s before, not shown)",
                    message,
                    dropped,
                    now - since,
                    extra={"repeated": dropped},
                )
        finally:
            self._flushing = False
        for kind, (_, _, message) in pending:
            self._seen[kind] = (now, 0, message)
        return len(pending)
