"""A stack: the named services of the system under test, whichever backend runs them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from support.proxy.link import Link
    from support.stack.replicated import ReplicatedDatabase

from support.stack.services import Service
from support.stack.workload import Workload

__all__ = ["Stack", "UnknownService", "Cleanup", "LOAD"]

#: the name the load goes by as one end of a link (the suite's HTTP link to the workload's target)
LOAD = "load"


class UnknownService(LookupError):
    """A scenario named a service the stack does not have."""

    @classmethod
    def among(cls, name: str, services: Iterable[str]) -> UnknownService:
        """The refusal of ``name``, listing the valid names (sorted)."""
        return cls(f"unknown service {name!r}; this stack has: {', '.join(sorted(services))}")


class Cleanup(ExitStack):
    """The one teardown mechanism: an :class:`~contextlib.ExitStack` that runs every callback, raises the first error.

    A backend's start pushes the close of each thing as it makes it
    (``made.callback(link.close)``) inside ``with Cleanup() as made:``, so a
    failed start unwinds what was made, newest first; a start that succeeds
    hands the callbacks to its :class:`Stack` with ``made.pop_all()``. Every
    callback runs even when one fails; once they all have, the first error is
    raised (a plain ExitStack raises the last one).
    """

    def __init__(self) -> None:
        super().__init__()
        self._errors: list[Exception] = []

    def callback(self, closer: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Callable[..., Any]:
        """Run ``closer(*args, **kwargs)`` on close; its error is kept and raised once the rest have run."""
        errors = self._errors  # the list travels with the callbacks through pop_all

        def collecting() -> None:
            try:
                closer(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - keep closing the rest
                errors.append(error)

        super().callback(collecting)
        return closer

    def pop_all(self) -> Cleanup:
        moved = super().pop_all()
        moved._errors, self._errors = self._errors, []
        return moved

    def __exit__(self, *exc_details: Any) -> bool:
        suppressed = super().__exit__(*exc_details)
        errors = list(self._errors)
        self._errors.clear()
        if errors:
            raise errors[0]
        return bool(suppressed)


@dataclass
class Stack:
    """The running system under test.

    ``services`` are every service of the stack file by name, ``links`` every
    proxied ``uses`` edge; ``api_url`` is the base URL of the workload's target; ``admin_dsn`` a libpq DSN with
    superuser rights on the stack's PostgreSQL (for faults and for reading
    rows back); ``app_dsn`` the DSN of the database the API uses;
    ``versions`` what runs, for the report. ``secrets`` lists strings that must
    never appear in evidence.
    """

    backend: str
    services: dict[str, Service]
    api_url: str
    admin_dsn: str
    app_dsn: str
    versions: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    #: the order services start in; stop runs it backwards
    start_order: tuple[str, ...] = ("postgres", "api")
    #: the path of the API's health endpoint
    health_path: str = "/health"
    #: the service the workload drives (``api_url`` is its URL)
    target: str = "api"
    #: what the suite writes and reads through the API (the reference API's users by default)
    workload: Workload = field(default_factory=Workload)
    #: proxied links between services, by the pair of service names they join (client, server)
    links: dict[tuple[str, str], Link] = field(default_factory=dict)
    #: replicated databases (``kind = "patroni"``) by service name: their nodes, for the cluster controller
    replicated: dict[str, ReplicatedDatabase] = field(default_factory=dict)
    #: where the load sends its requests: the load link's listener (``api_url`` when there is no such link)
    load_url: str = ""
    #: what closing the stack undoes, newest first: the backend pushed each close as it made the thing
    cleanup: Cleanup = field(default_factory=Cleanup, repr=False)

    def service(self, name: str) -> Service:
        """The service called ``name``; an unknown name is refused with the valid ones."""
        try:
            return self.services[name]
        except KeyError:
            raise UnknownService.among(name, self.services) from None

    @property
    def health_url(self) -> str:
        """The API's health endpoint."""
        return self.api_url + self.health_path

    def link(self, one: str, other: str) -> Link:
        """The proxied network link between two services (or the load and the target), in either order."""
        for name in (one, other):
            if name != LOAD or name in self.services:
                self.service(name)
        found = self.links.get((one, other)) or self.links.get((other, one))
        if found is None:
            known = ", ".join(f"{a} and {b}" for a, b in self.links) or "none"
            raise UnknownService(f"there is no network link between {one} and {other} to break; links: {known}")
        return found

    @property
    def names(self) -> list[str]:
        return sorted(self.services)

    def restart_all(self, timeout: float) -> None:
        """Stop every service (reverse start order), then start them all; each step within ``timeout`` s."""
        for name in reversed(self.start_order):
            self.services[name].stop(timeout)
        for name in self.start_order:
            self.services[name].start(timeout)

    def ensure_running(self, timeout: float) -> None:
        """Heal every link, resume paused and start stopped services, in start order (a heal that always applies)."""
        for link in self.links.values():
            link.heal()
        for name in self.start_order:
            service = self.services[name]
            service.resume()
            service.start(timeout)

    def close(self) -> None:
        """Stop every service and remove what the backend made, newest first; all run, the first error is raised.

        Idempotent: a second close has nothing left to do.
        """
        self.cleanup.close()
