"""A stack: the named services of the system under test, whichever backend runs them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from support.proxy.link import Link

from support.stack.services import Service
from support.stack.workload import Workload

__all__ = ["Stack", "UnknownService"]


class UnknownService(LookupError):
    """A scenario named a service the stack does not have."""


@dataclass
class Stack:
    """The running system under test.

    ``api_url`` is the base URL of the API; ``admin_dsn`` a libpq DSN with
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
    #: what the suite writes and reads through the API (the reference API's users by default)
    workload: Workload = field(default_factory=Workload)
    #: proxied links between services, by the pair of service names they join (client, server)
    links: dict[tuple[str, str], "Link"] = field(default_factory=dict)
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def service(self, name: str) -> Service:
        """The service called ``name``; an unknown name is refused with the valid ones."""
        try:
            return self.services[name]
        except KeyError:
            raise UnknownService(
                f"unknown service {name!r}; this stack has: {', '.join(sorted(self.services))}") from None

    @property
    def health_url(self) -> str:
        """The API's health endpoint."""
        return self.api_url + self.health_path

    def link(self, one: str, other: str) -> "Link":
        """The proxied network link between two services, in either order."""
        for name in (one, other):
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

    def on_close(self, closer: Callable[[], None]) -> None:
        """Run ``closer`` when the stack closes (after the services stop)."""
        self._closers.append(closer)

    def close(self) -> None:
        """Stop every service and remove what the backend made; collects errors and raises the first."""
        errors: list[BaseException] = []
        for name in reversed(self.start_order):
            try:
                self.services[name].close()
            except Exception as error:  # noqa: BLE001 - keep closing the rest
                errors.append(error)
        for closer in reversed(self._closers):
            try:
                closer()
            except Exception as error:  # noqa: BLE001
                errors.append(error)
        self._closers.clear()
        if errors:
            raise errors[0]
