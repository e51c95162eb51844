"""The ASGI application: ``app`` for uvicorn, and :func:`create_app` for variants.

``create_app`` takes the protections as arguments, so tests can build broken
variants of this service (no pre-ping, no pool disposal, ...) without any
switch in the product itself. Importing this module needs no configuration;
the environment is read when the server starts.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from . import descriptor_reserve, health, routes, sessions
from .config import ConfigError, Settings, load_settings
from .db import Database, EngineFactory, ErrorHook, describe_failure, dispose_pool, make_engine
from .errors import install_error_handlers

__all__ = ["app", "create_app"]

log = logging.getLogger("users_api")

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


def _setup_logging() -> None:
    # uvicorn configures only its own loggers; without a handler our INFO lines vanish.
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s users_api: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


class _ConfigGate:
    """ASGI middleware that loads the settings when the server starts.

    A bad setting is reported to the server as ``lifespan.startup.failed`` with a
    one-line message, so uvicorn prints that line and exits non-zero instead of
    a traceback in which the variable's name is hard to find.
    """

    def __init__(self, app: Any, holder: FastAPI, config: Settings | None) -> None:
        self.app = app
        self.holder = holder
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        first = await receive()
        if first["type"] == "lifespan.startup":
            try:
                self.holder.state.config = self.config if self.config is not None else load_settings()
            except ConfigError as exc:
                await send({"type": "lifespan.startup.failed", "message": f"users-api: configuration error: {exc}"})
                return
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return first
            return await receive()

        await self.app(scope, replay, send)


async def _ensure_schema(db: Database) -> None:
    """Create the schema, retrying until it works or the server shuts down."""
    last_error = ""
    # Capped exponential backoff, no stop: the API must come up before its database
    # and heal by itself. Cancellation at shutdown ends the loop (reraise keeps it a
    # CancelledError rather than a RetryError).
    retrying = AsyncRetrying(
        wait=wait_exponential(multiplier=0.05, max=1.0),
        retry=retry_if_exception_type(Exception),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            try:
                await db.create_schema()
            except Exception as exc:
                message = describe_failure(exc)
                if message != last_error:  # once per distinct cause, not once per second
                    log.warning("schema not created yet, retrying: %s", message)
                    last_error = message
                raise
    log.info("schema ready")


def create_app(
    config: Settings | None = None,
    *,
    engine_factory: EngineFactory = make_engine,
    on_database_error: ErrorHook = dispose_pool,
    session_clock: Callable[[], float] = time.monotonic,
    descriptor_reserve_kept: bool = True,
) -> FastAPI:
    """Build the users API.

    ``config``: settings, or ``None`` to read the environment at startup.
    ``engine_factory``: builds the SQLAlchemy engine from the settings.
    ``on_database_error(engine, exc)``: called in the worker thread after every
    database failure but a constraint violation (default: dispose the pool when the
    failure may have left dead connections in it, :func:`users_api.db.should_discard_pool`).
    ``session_clock``: what session lifetimes are measured on (:mod:`users_api.sessions`).
    ``descriptor_reserve_kept``: keep a spare file descriptor, so that a client the process cannot
    accept at its descriptor limit is answered 503 instead of waiting or being reset
    (:mod:`users_api.descriptor_reserve`).
    """

    # Now, at import, while the lowest descriptor numbers are free: under a limit set below what the
    # process holds, only a spare whose number is below the limit can be traded for a client.
    reserve = descriptor_reserve.DescriptorReserve() if descriptor_reserve_kept else None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _setup_logging()
        settings: Settings = app.state.config
        log.info(
            "starting: database %s, pool %d+%d (timeout %g s), request timeout %g s, health timeout %g s",
            settings.database,
            settings.pool_size,
            settings.max_overflow,
            settings.pool_timeout,
            settings.request_timeout,
            settings.health_timeout,
        )
        db = Database(settings, engine_factory=engine_factory, on_database_error=on_database_error)
        app.state.db = db
        app.state.sessions = sessions.Sessions(settings.session_seconds, session_clock)
        sweeper = asyncio.create_task(app.state.sessions.sweep_forever(), name="users-session-sweeper")
        # In the background: serving (503s and /health) starts even when the database is down.
        schema_task = asyncio.create_task(_ensure_schema(db), name="users-schema")
        if reserve is not None:
            reserve.install(asyncio.get_running_loop())
        try:
            yield
        finally:
            schema_task.cancel()
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await schema_task
            db.close()
            if reserve is not None:
                reserve.uninstall()
            log.info("stopped")

    app = FastAPI(title="users-api", lifespan=lifespan)
    app.include_router(routes.router)
    app.include_router(health.router)
    app.include_router(sessions.router)
    install_error_handlers(app)
    app.add_middleware(_ConfigGate, holder=app, config=config)
    return app


app = create_app()
