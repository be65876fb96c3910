"""Logging: a logger per module under ``alert_broker``, text for terminals and JSON lines for clusters."""

from __future__ import annotations

import io
import json
import logging

import pytest

from alert_broker.pipeline.logs import configure_logging


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
