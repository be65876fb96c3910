"""Logging: a logger per module under ``alert_broker``, text for terminals and JSON lines for clusters."""

from __future__ import annotations

import io
import json
import logging

import pytest

from alert_broker.pipeline.logs import RepeatFilter, configure_logging
from alert_broker.storage.secrets import register as register_secret


def test_json_lines_carry_level_logger_message_and_extras():
    buf = io.StringIO()
    configure_logging("INFO", "json", stream=buf)
    logging.getLogger("alert_broker.pipeline.driver").info("batch %s done", "b1", extra={"alerts": 500})
    logging.getLogger("alert_broker.pipeline.driver").debug("not shown at INFO")
    lines = buf.getvalue().splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["level"] == "INFO" and rec["logger"] == "alert_broker.pipeline.driver"
    assert rec["message"] == "batch b1 done" and rec["alerts"] == 500 and rec["ts"].endswith("Z")


def test_reconfiguring_replaces_the_handler_and_text_is_readable():
    buf = io.StringIO()
    configure_logging("DEBUG", "text", stream=io.StringIO())
    configure_logging("DEBUG", "text", stream=buf)
    logging.getLogger("alert_broker.x").debug("hello")
    assert buf.getvalue().count("hello") == 1 and "DEBUG" in buf.getvalue()
    handlers = [h for h in logging.getLogger("alert_broker").handlers if getattr(h, "_alert_broker", False)]
    assert len(handlers) == 1


@pytest.mark.parametrize("level, fmt", [("LOUD", "text"), ("INFO", "xml")])
def test_bad_settings_are_refused(level, fmt):
    with pytest.raises(ValueError):
        configure_logging(level, fmt)


def test_repeats_are_shown_once_per_window_with_their_count():
    now = [0.0]
    filt = RepeatFilter(30.0, key=lambda m: m.split(" (after")[0], clock=lambda: now[0])
    logger = logging.getLogger("alert_broker.test.repeats")
    logger.propagate = False
    shown: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = shown.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    logger.addFilter(filt)
    try:
        for i in range(50):  # a client retrying a refused connection: one line per attempt
            now[0] = i * 0.1
            logger.error("Connect to 127.0.0.1:9 failed: Connection refused (after %dms in state CONNECT)", i)
        logger.warning("Connect to 127.0.0.1:9 failed: Connection refused")  # another level: its own kind
        logger.error("Metadata request failed")  # another message: its own kind
        assert [r.getMessage() for r in shown] == [
            "Connect to 127.0.0.1:9 failed: Connection refused (after 0ms in state CONNECT)",
            "Connect to 127.0.0.1:9 failed: Connection refused",
            "Metadata request failed",
        ]
        now[0] = 35.0  # after the window the next one passes and says how many were dropped
        logger.error("Connect to 127.0.0.1:9 failed: Connection refused (after 7ms in state CONNECT)")
        assert len(shown) == 4 and shown[-1].repeated == 49
        assert "49 more like it in the 35 s before, not shown" in shown[-1].getMessage()
        now[0] = 36.0
        logger.error("Connect to 127.0.0.1:9 failed: Connection refused (after 7ms in state CONNECT)")
        assert len(shown) == 4  # a new window began at 35 s
        # the end of a burst (the run stops, the outage ends): its count is said once, with the last line
        now[0] = 40.0
        logger.error("Connect to 127.0.0.1:9 failed: Connection refused (after 9ms in state CONNECT)")
        assert filt.flush() == 1 and len(shown) == 5 and shown[-1].repeated == 2
        assert shown[-1].getMessage() == (
            "Connect to 127.0.0.1:9 failed: Connection refused (after 9ms in state CONNECT)"
            " (2 more like it in the 5 s before, not shown)"
        )
        assert filt.flush() == 0 and len(shown) == 5  # nothing dropped since
        logger.error("Connect to 127.0.0.1:9 failed: Connection refused (after 7ms in state CONNECT)")
        assert len(shown) == 5  # the flushed line counts as shown: its window starts there
    finally:
        logger.removeHandler(handler)
        logger.removeFilter(filt)


def test_repeat_filter_redacts_what_it_passes():
    secret = "s3cr3t-Pa55"
    register_secret(secret)
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "SASL auth with %s failed", (secret,), None)
    assert RepeatFilter().filter(record)
    assert secret not in record.getMessage() and "***" in record.getMessage()
