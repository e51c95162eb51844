"""What the broken variants share: serving one route of the reference users API differently.

The variants build the reference app with :func:`users_api.main.create_app` and
change one thing from outside, so the product itself carries no switch that
turns a protection off.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

__all__ = ["override_route"]


def override_route(app: FastAPI, method: str, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
    """Serve ``method path`` with ``endpoint`` ahead of the reference handler.

    ``options`` go to :meth:`FastAPI.add_api_route` (``status_code``,
    ``response_model``, ...). The route is put first because the router answers
    with the first route that matches; removing the reference's route instead
    would depend on how FastAPI stores included routers, which changes between
    versions.
    """
    app.add_api_route(path, endpoint, methods=[method], **options)
    routes = app.router.routes
    routes.insert(0, routes.pop())
