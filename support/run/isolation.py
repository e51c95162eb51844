"""Each scenario starts from a stack that is ready, whatever the scenarios before it did to it.

Before a scenario every link is healed, every service resumed and started,
and each must be ready within ``ready_probe_timeout`` s. A service that is not
(a service that hangs, as one whose pool its own threads starved does) is
restarted, and the restart goes in the scenario's notes. If the stack still
cannot be made ready, the scenario fails at once with the service's own last
log lines; after ``not_ready_limit`` such scenarios in a row the run stops,
naming the service, rather than spending minutes on every scenario left.

``isolation`` chooses how fresh each scenario's services are: ``reuse`` keeps
them (restarted only when they are not ready), ``restart-api`` restarts the
API before every scenario but the first (a fresh pool and fresh threads),
``restart-all`` restarts the whole stack.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from support.checks.health import HEALTHY, wait_for_health
from support.checks.verdict import CheckFailed
from support.core.config import ISOLATIONS, Settings
from support.core.redact import redact
from support.faults import audit
from support.faults.admin import api_role
from support.stack.services import Service, ServiceError
from support.stack.stack import Stack

__all__ = ["ISOLATIONS", "Isolation", "StackNotReady", "RunStopped", "last_log_lines"]

#: the service whose health endpoint says whether the stack is healthy
API = "api"
#: seconds a service that failed its probe gets to stop before SIGKILL: a hung one will not stop by itself,
#: and a healthy PostgreSQL's fast shutdown takes ≈ 0.2 s
STOP_GRACE = 1.0


class StackNotReady(AssertionError):
    """The stack could not be made ready for a scenario; the message carries the service's last log lines."""

    def __init__(self, message: str, service: str) -> None:
        super().__init__(message)
        self.service = service


class RunStopped(SystemExit):
    """Too many scenarios in a row found the stack not ready: the run stops (behave aborts on SystemExit)."""


def last_log_lines(service: Service, lines: int = 10, skip: str = "") -> list[str]:
    """The last non-empty lines of the service's own output (without the backends' epoch-second stamps),
    leaving out those that contain ``skip`` (the access log of the suite's own probes)."""
    try:
        text = service.logs()
    except Exception as error:  # noqa: BLE001 - a service gone with its logs says so
        return [f"(its logs could not be read: {type(error).__name__}: {error})"]
    out = []
    for line in text.splitlines()[-lines * 20 :]:
        head, _, rest = line.partition(" ")
        line = rest if head.replace(".", "", 1).isdigit() else line
        if line.strip() and not (skip and skip in line):
            out.append(line.rstrip())
    return out[-lines:]


@dataclass
class Isolation:
    """The before-scenario routine for one run's stack, and the count of not-ready scenarios in a row."""

    stack: Stack
    settings: Settings
    not_ready_in_a_row: int = 0
    prepared: int = 0
    #: the residue audit after each scenario, made before the first (None: not yet, or no database)
    residues: audit.ResidueAudit | None = None

    @property
    def restartable(self) -> bool:
        """False on an attached stack: the suite did not start it and cannot restart it."""
        return self.stack.backend != "attached"

    @property
    def probe(self) -> float:
        """Seconds a service has to be ready before it is restarted (an attached one: its whole start bound)."""
        return self.settings.ready_probe_timeout if self.restartable else self.settings.start_timeout

    def prepare(self, scenario: str) -> dict[str, str]:
        """Make the stack ready for ``scenario``; return notes of what had to be restarted.

        Raises :class:`StackNotReady` when it cannot, and :class:`RunStopped`
        once that happened ``not_ready_limit`` times in a row.
        """
        self.prepared += 1
        notes: dict[str, str] = {}
        try:
            if self.prepared > 1:
                self._freshen(notes)
            self._make_ready(notes)
        except StackNotReady as error:
            self.not_ready_in_a_row += 1
            if self.not_ready_in_a_row >= self.settings.not_ready_limit:
                line = (
                    f"chaos-suite: stopping the run: {error.service} could not be made ready before "
                    f"{self.not_ready_in_a_row} scenarios in a row "
                    f"(not_ready_limit={self.settings.not_ready_limit})"
                )
                print(line, file=sys.stderr, flush=True)
                raise RunStopped(f"{line}\n{error}") from None
            raise
        self.not_ready_in_a_row = 0
        if self.residues is None and self.stack.admin_dsn:
            self.residues = audit.ResidueAudit(
                self.stack, api_role(self.stack.app_dsn), start_timeout=self.settings.start_timeout
            )
            self.stack.cleanup.callback(self.residues.close)
        for note in notes.values():
            print(f"chaos-suite: before {scenario!r}: {note}", file=sys.stderr, flush=True)
        return notes

    def bring_back(self) -> None:
        """After a scenario's heals: the residue audit (:mod:`support.faults.audit`), then every link healed and
        every service resumed, without waiting for anything.

        Whatever the audit finds is removed and then fails the scenario with
        one line naming it (:class:`support.faults.audit.ResidueLeft`; joined to
        the line of a heal that failed before, if one is on its way). Whether
        each service is ready is the next :meth:`prepare`'s to find out (once,
        within the probe bound): waiting here too would pay for a hung service
        twice.
        """
        left: audit.ResidueLeft | None = None
        audited = False
        if self.residues is not None:
            try:
                self.residues.audit_and_heal()
                audited = True
            except audit.ResidueLeft as found:
                left, audited = found, True
            except Exception as error:  # noqa: BLE001 - the links and services below are still brought back
                left = audit.ResidueLeft(f"the residue audit failed: {type(error).__name__}: {error}")
        if not audited:  # an audit found every link clean, or healed it
            for link in self.stack.links.values():
                link.heal()
        for name in self.stack.start_order:
            self.stack.services[name].resume()
        if left is not None:
            failed_heal = sys.exc_info()[1]  # called from a finally: a heal's failure may be on its way
            raise audit.ResidueLeft(f"{failed_heal}; {left}" if failed_heal is not None else str(left))

    # -- internals -----------------------------------------------------------------
    def _freshen(self, notes: dict[str, str]) -> None:
        mode = self.settings.isolation
        try:
            if mode == "restart-all":
                self.stack.restart_all(self.settings.start_timeout)
            elif mode == "restart-api":
                self.stack.service(API).restart(timeout=self.settings.start_timeout)
        except ServiceError as error:
            who = API if mode == "restart-api" else "the stack"
            raise self._not_ready(who, f"after its {mode} failed: {error}") from None

    def _make_ready(self, notes: dict[str, str]) -> None:
        for link in self.stack.links.values():
            link.heal()
        for name in self.stack.start_order:
            service = self.stack.services[name]
            try:
                service.resume()
                service.start(self.probe)
            except ServiceError as error:
                if not self.restartable:
                    raise self._not_ready(name, f"and cannot be restarted: {error}") from None
                notes[f"{name} restarted"] = f"{name} was not ready within {self.probe:g} s ({error}); restarted it"
                self._restart(name)
        try:
            wait_for_health(
                self.stack.health_url, HEALTHY, self.probe if self.restartable else self.settings.healthy_timeout
            )
        except CheckFailed as error:
            if not self.restartable:
                raise self._not_ready(API, f"and cannot be restarted: {error}") from None
            notes[f"{API} restarted"] = f"{API} was not healthy within {self.probe:g} s ({error}); restarted it"
            self._restart(API)
            try:
                wait_for_health(self.stack.health_url, HEALTHY, self.settings.healthy_timeout)
            except CheckFailed as again:
                raise self._not_ready(API, f"even after a restart: {again}") from None

    def _restart(self, name: str) -> None:
        """Stop (SIGKILL after :data:`STOP_GRACE` s) and start again within ``start_timeout`` s."""
        service = self.stack.service(name)
        try:
            service.stop(STOP_GRACE)
            service.start(self.settings.start_timeout)
        except ServiceError as error:
            raise self._not_ready(name, f"even after a restart: {error}") from None

    def _not_ready(self, name: str, why: str) -> StackNotReady:
        service = self.stack.services.get(name)
        probes = f"GET {self.stack.health_path} "  # the access log of our own probes says nothing of why
        lines = last_log_lines(service, skip=probes) if service is not None else []
        said = "".join(f"\n    {line}" for line in lines) if lines else "\n    (nothing)"
        return StackNotReady(
            redact(f"{name} is not ready {why}; the last lines of its log:{said}", self.stack.secrets), name
        )
