"""An attached stack: a service and database that something else started, on 127.0.0.1.

The suite drives load through the API, reads back through SQL and injects
database faults, but it never starts, stops, kills, pauses or restarts what it
did not start: those faults are refused with a one-line reason. Targets that
are not on the loopback interface are refused unless the user opts in with
``allow_remote_targets``; emptying the database before each scenario (the
workload's ``reset_sql``) is skipped unless ``attached_reset`` is set.
"""

from __future__ import annotations

import signal
from pathlib import Path
from urllib.parse import urlsplit

from support.core.config import Settings, SettingsError
from support.core.ports import LOOPBACK
from support.core.targets import TargetNotAllowed, check_target
from support.core.waiting import WaitTimeout, wait_until
from support.stack.readiness import database_answers, http_answers
from support.stack.services import Address, Service, ServiceError
from support.stack.stack import Stack
from support.stack.stack_file import stack_definition

__all__ = ["AttachedService", "start_attached_stack", "check_target_allowed"]


def check_target_allowed(what: str, host: str, settings: Settings) -> None:
    """Refuse a target whose addresses are off the loopback interface unless ``allow_remote_targets`` is set."""
    try:
        check_target(host, settings.allow_remote_targets)
    except TargetNotAllowed as error:
        raise SettingsError(
            f"refusing to inject faults into {what} at {host}: {error} and the suite did not start "
            "it; if you own that stack and mean it, set allow_remote_targets=true"
        ) from None


class AttachedService:
    """A service the suite watches but does not control: only readiness and its address."""

    def __init__(self, name: str, address: Address, ready) -> None:
        self.name = name
        self._address = address
        self._ready = ready

    @property
    def address(self) -> Address:
        return self._address

    def _refuse(self, action: str) -> None:
        raise ServiceError(
            f"cannot {action} {self.name}: the suite did not start it (attached stack); "
            "run the stack with backend=process or backend=docker for process faults"
        )

    def start(self, timeout: float = 30.0) -> None:
        self.wait_ready(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        self._refuse("stop")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        self._refuse("kill")

    def restart(self, mode: str = "fast", timeout: float = 30.0) -> None:
        self._refuse("restart")

    def pause(self) -> None:
        self._refuse("pause")

    def resume(self) -> None:
        """Nothing to resume: the suite never paused it."""

    def is_ready(self) -> bool:
        return bool(self._ready())

    def wait_ready(self, timeout: float) -> None:
        try:
            wait_until(self.is_ready, timeout, f"the attached {self.name} answering")
        except WaitTimeout as error:
            raise ServiceError(f"{error}; the suite does not start attached services: start it yourself") from None

    def logs(self, since: float | None = None) -> str:
        return f"(the logs of the attached {self.name} are not collected by the suite)\n"

    def close(self) -> None:
        """Nothing to clean: the suite started nothing."""


def start_attached_stack(settings: Settings, run_dir: Path) -> Stack:
    """Attach to ``attached_api_url`` and ``attached_database_url``; both must answer within ``start_timeout`` s."""
    if not settings.attached_api_url or not settings.attached_database_url:
        raise SettingsError(
            "backend=attached needs attached_api_url (http://127.0.0.1:PORT) and "
            "attached_database_url (postgresql://USER:PASSWORD@127.0.0.1:PORT/DB)"
        )
    definition = stack_definition(settings)
    api = urlsplit(settings.attached_api_url)
    db = urlsplit(settings.attached_database_url)
    if api.scheme not in ("http", "https") or not api.hostname or db.scheme not in ("postgresql", "postgres"):
        raise SettingsError(
            "attached_api_url must be http://HOST:PORT and attached_database_url "
            "postgresql://USER:PASSWORD@HOST:PORT/DB"
        )
    check_target_allowed("the API", api.hostname, settings)
    check_target_allowed("PostgreSQL", db.hostname or "", settings)
    api_url = settings.attached_api_url.rstrip("/")
    dsn = settings.attached_database_url

    services: dict[str, Service] = {
        "api": AttachedService(
            "api", Address(api.hostname, api.port or 80), lambda: http_answers(api_url + definition.api.health_path)
        ),
        "postgres": AttachedService(
            "postgres", Address(db.hostname or LOOPBACK, db.port or 5432), lambda: database_answers(dsn)
        ),
    }
    workload = definition.workload
    if not settings.attached_reset:
        from dataclasses import replace

        workload = replace(workload, reset_sql="SELECT 1")  # never empty someone else's database unasked
    stack = Stack(
        backend="attached",
        services=services,
        api_url=api_url,
        admin_dsn=dsn,
        app_dsn=dsn,
        workload=workload,
        health_path=definition.api.health_path,
        secrets=tuple(filter(None, [db.password])),
    )
    for service in services.values():
        service.wait_ready(settings.start_timeout)
    return stack
