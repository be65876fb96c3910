"""librdkafka's own log lines go through the broker's logging, each kind once per window, not raw to stderr."""

from __future__ import annotations

import logging
import socket
import time

from confluent_kafka import Consumer

from alert_broker.pipeline import kafka


def test_a_refused_connection_is_logged_once_through_the_broker_logging(capfd):
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    kafka.LIBRDKAFKA_LOG.addHandler(handler)
    with socket.socket() as sock:  # bound, never listening: every connection attempt is refused at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        consumer = kafka.client(Consumer, {"bootstrap.servers": f"127.0.0.1:{port}", "group.id": "g"})
        try:
            consumer.subscribe(["alerts"])
            # librdkafka retries many times a second; poll() hands its lines over
            end = time.monotonic() + 3.0
            while time.monotonic() < end:
                consumer.poll(0.2)
        finally:
            consumer.close()
            kafka.LIBRDKAFKA_LOG.removeHandler(handler)
    refused = [r for r in records if "Connection refused" in r.getMessage()]
    assert refused and refused[0].levelno == logging.ERROR
    assert f"127.0.0.1:{port}" in refused[0].getMessage()
    assert len(refused) <= 2, [r.getMessage() for r in refused]  # one per window (30 s), not one per attempt
    assert "rdkafka#" not in capfd.readouterr().err  # nothing written around the logging
