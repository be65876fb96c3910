"""``retry_postgres`` (pipeline/driver.py): PostgreSQL unreachable is waited for up to the limit, then
``PostgresUnavailable``; a refusal for good (wrong password, no such database) is raised at once. The messages are
libpq's own (psycopg gives connection failures no SQLSTATE)."""

from __future__ import annotations

import psycopg
import pytest

from alert_broker.pipeline import driver
from alert_broker.pipeline.driver import PostgresUnavailable, retry_postgres

REFUSED = 'connection failed: connection to server at "127.0.0.1", port 5432 failed: Connection refused'
STARTING = 'connection failed: connection to server on socket "/x" failed: FATAL:  the database system is starting up'
WRONG_PASSWORD = (
    'connection failed: connection to server on socket "/x" failed: FATAL:  password authentication failed for '
    'user "broker"'
)
NO_DATABASE = (
    'connection failed: connection to server on socket "/x" failed: FATAL:  database "alerts" does not exist'
)


class _Flaky:
    def __init__(self, messages: list[str]) -> None:
        self.messages, self.calls = list(messages), 0

    def __call__(self) -> str:
        self.calls += 1
        if self.messages:
            raise psycopg.OperationalError(self.messages.pop(0))
        return "done"


@pytest.fixture(autouse=True)
def _no_sleep(monkeypatch):
    monkeypatch.setattr(driver.time, "sleep", lambda s: None)


def test_unreachable_or_starting_is_waited_for():
    call = _Flaky([REFUSED, STARTING, REFUSED])
    assert retry_postgres(call, "a test", limit=60) == "done" and call.calls == 4


@pytest.mark.parametrize("message", [WRONG_PASSWORD, NO_DATABASE])
def test_a_refusal_for_good_is_raised_at_once(message):
    call = _Flaky([message, message])
    with pytest.raises(psycopg.OperationalError, match="FATAL"):
        retry_postgres(call, "a test", limit=60)
    assert call.calls == 1


def test_past_the_limit_the_run_stops(monkeypatch):
    clock = iter(range(0, 1000, 7))
    monkeypatch.setattr(driver.time, "monotonic", lambda: next(clock))
    with pytest.raises(PostgresUnavailable, match=r"unreachable for \d+ s \(a test\)"):
        retry_postgres(_Flaky([REFUSED] * 100), "a test", limit=20)
