"""What the broken variants share: swapping one route of the reference users API for another.

The variants build the reference app with :func:`users_api.main.create_app` and
change one thing from outside, so the product itself carries no switch that
turns a protection off.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

__all__ = ["replace_route"]


def replace_route(app: FastAPI, method: str, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
    """Serve ``method path`` with ``endpoint`` instead of the reference handler.

    ``options`` go to :meth:`FastAPI.add_api_route` (``status_code``,
    ``response_model``, ...). Raises ``LookupError`` when the reference app has
    no such route, so a renamed route cannot leave a variant silently unbroken.
    """
    routes = app.router.routes
    found = [r for r in routes if isinstance(r, APIRoute) and r.path == path and method in r.methods]
    if not found:
        raise LookupError(f"the reference app has no route {method} {path}")
    for route in found:
        routes.remove(route)
    app.add_api_route(path, endpoint, methods=[method], **options)
