"""Broken variant of the users API: it exits at start when the database is down.

Like the SQL tutorials of most web frameworks, it creates its schema when the
module is imported (``metadata.create_all(engine)``), so a start while
PostgreSQL is unreachable raises, uvicorn exits, and the restart policy brings
back a process that exits again: nothing answers, not even ``/health``, until
the database is back. The reference API starts anyway, answers 503 and creates
the schema in the background. Start it with ``PYTHONPATH=stack/api:tests/broken_apis``::

    python -m uvicorn crash_at_start:app
"""
from __future__ import annotations

from sqlalchemy import create_engine

from users_api.config import load_settings
from users_api.db import metadata
from users_api.main import create_app

__all__ = ["app"]

_settings = load_settings()
_engine = create_engine(_settings.database_url, connect_args={"connect_timeout": _settings.connect_timeout})
metadata.create_all(_engine)  # raises OperationalError while the database is down: the process exits
_engine.dispose()

app = create_app()
