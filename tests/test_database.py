"""The suite's own connections wait out a moment when every backend slot is taken, and nothing else."""

import psycopg2
import pytest

from support.stack import database


def test_a_busy_server_is_retried_until_it_has_a_slot(monkeypatch):
    calls = []

    def connect(dsn, **params):
        calls.append(params)
        if len(calls) < 3:
            raise psycopg2.OperationalError("connection failed: FATAL:  sorry, too many clients already")
        return "connection"

    monkeypatch.setattr(psycopg2, "connect", connect)
    assert database.open_connection("dbname=x", 2.0, application_name="t") == "connection"
    assert len(calls) == 3 and calls[0]["application_name"] == "t"


def test_other_errors_and_a_server_busy_past_the_deadline_raise(monkeypatch):
    def refused(dsn, **params):
        raise psycopg2.OperationalError("connection refused")

    monkeypatch.setattr(psycopg2, "connect", refused)
    with pytest.raises(psycopg2.OperationalError, match="refused"):
        database.open_connection("dbname=x", 2.0)

    def busy(dsn, **params):
        raise psycopg2.OperationalError("FATAL:  sorry, too many clients already")

    monkeypatch.setattr(psycopg2, "connect", busy)
    with pytest.raises(psycopg2.OperationalError, match="too many clients"):
        database.open_connection("dbname=x", 0.1)


class FakeConnection:
    def __init__(self):
        self.autocommit = False
        self.closed = False

    def close(self):
        self.closed = True


def test_connect_bounds_statements_is_autocommit_and_closes(monkeypatch):
    calls, made = [], []

    def connect(dsn, **params):
        calls.append(params)
        made.append(FakeConnection())
        return made[-1]

    monkeypatch.setattr(psycopg2, "connect", connect)
    with database.connect("dbname=x", 3.0) as conn:
        assert conn.autocommit and not conn.closed
    assert conn.closed
    assert calls[0] == {"connect_timeout": 3, "application_name": "chaos-suite", "options": "-c statement_timeout=3000"}
    with database.connect(
        "dbname=x", 1.0, application_name="t", autocommit=False, settings={"lock_timeout": 500, "search_path": "a b"}
    ) as conn:
        assert not conn.autocommit
    assert calls[1] == {
        "connect_timeout": 2,
        "application_name": "t",
        "options": "-c lock_timeout=500 -c search_path=a\\ b",
    }


def test_a_probe_does_not_wait_for_a_slot(monkeypatch):
    calls = []

    def busy(dsn, **params):
        calls.append(params)
        raise psycopg2.OperationalError("FATAL:  sorry, too many clients already")

    monkeypatch.setattr(psycopg2, "connect", busy)
    with pytest.raises(psycopg2.OperationalError, match="too many clients"):
        database.open_connection("dbname=x", 5.0, wait_for_slot=False)
    assert len(calls) == 1
