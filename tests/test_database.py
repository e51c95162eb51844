"""The suite's own connections wait out a moment when every backend slot is taken, and nothing else."""
import psycopg2
import pytest

from support.stack import database


def test_a_busy_server_is_retried_until_it_has_a_slot(monkeypatch):
    calls = []

    def connect(dsn, **params):
        calls.append(params)
        if len(calls) < 3:
            raise psycopg2.OperationalError('connection failed: FATAL:  sorry, too many clients already')
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
