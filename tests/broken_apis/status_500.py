"""Broken variant of the users API: database failures answered 500 instead of 503.

The reference app maps every database failure to a fast ``503`` with
``Retry-After`` (:mod:`users_api.errors`). Here that handler is missing, as in a
service whose database exceptions escape its handlers: the framework answers
``500 Internal Server Error`` (and uvicorn may drop the keep-alive connection),
which tells clients "bug" where the truth is "try again". Scenarios with "every
failed request is answered with 503" must fail against it. Start it with
``PYTHONPATH=stack/api:tests/broken_apis``::

    python -m uvicorn status_500:app
"""
from __future__ import annotations

from users_api.db import DatabaseUnavailable
from users_api.main import create_app

__all__ = ["app"]

app = create_app()
# Starlette reads the handlers when it builds its middleware stack on the first request,
# so removing the handler here is as if it had never been installed.
del app.exception_handlers[DatabaseUnavailable]
