"""The state of one scenario: what it started, injected, created and observed.

Steps keep their results here and nowhere else on behave's context; the
judgements the Then steps make are methods here, so each step stays one line.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.checks import durability as durable
from support.checks import during_faults, error_rates, hostile_input, in_flight, latency, processing, statuses
from support.checks import records as users
from support.checks import recovery as recovery_checks
from support.checks import repeats as repeated_runs
from support.checks.durability import Durability
from support.checks.health import HEALTHY, UNREACHABLE, wait_for_health
from support.checks.messages import NO_LOAD, no_fault
from support.checks.metrics import metrics
from support.checks.recovery import Recovery
from support.checks.verdict import CheckFailed
from support.core.config import Settings
from support.core.waiting import retry, wait_until
from support.faults.base import Fault
from support.faults.descriptors import DescriptorLimit
from support.faults.factory import FaultFactory
from support.faults.ledger import FaultLedger
from support.faults.limits import CpuLimit, MemoryLimit
from support.load.controller import LoadRun
from support.load.engine import describe_engine, start_engine_load
from support.load.history import Request
from support.load.spec import LoadSpec
from support.run.cluster import ClusterScenario
from support.run.repeat import RepeatRun
from support.stack import database
from support.stack.stack import Stack

__all__ = ["ScenarioState"]


@dataclass
class ScenarioState:
    """One scenario's collaborators and results."""

    name: str
    stack: Stack
    settings: Settings
    work_dir: Path
    ledger: FaultLedger
    users: list[users.User] = field(default_factory=list)
    load: LoadRun | None = None
    history: list[Request] | None = None
    response: Any = None
    recovery: Recovery | None = None
    durability: Durability | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    #: which run of a repeated scenario this is (None: not repeated)
    repeat: RepeatRun | None = None
    #: a client's sign-in session (support.checks.sessions), for the clock scenarios
    session: Any = None
    #: percent of the load's requests sent malformed (support.load.malformed), set before the load starts
    malformed_percent: float = 0.0
    #: the faults a step can inject, made from the stack and the settings (DSNs, roles, tables, timeouts)
    faults: FaultFactory = field(init=False, repr=False)
    #: the replicated database's roles, faults and watch (None: the stack has no ``kind = "patroni"`` service)
    cluster: ClusterScenario | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.faults = FaultFactory(self.stack, self.settings, self.work_dir)
        if self.stack.replicated:
            self.cluster = ClusterScenario(self.stack, self.settings, self.ledger)

    # -- faults ------------------------------------------------------------------
    def inject(self, fault: Fault) -> None:
        """Inject a fault now; it is healed at the end of the scenario at the latest."""
        self.ledger.inject(fault)

    def hold(self, fault: Fault, seconds: float) -> None:
        """Inject a fault, keep it ``seconds``, heal it."""
        self.ledger.hold(fault, seconds)

    def start_service(self, name: str) -> None:
        """Start a service; a stop fault injected on it earlier counts as healed now."""
        service = self.stack.service(name)
        open_stops = [w for w in self.ledger.open_faults() if w.target == name]
        for fault in open_stops:
            self.ledger.heal(fault)
        service.start(self.settings.start_timeout)

    def remove_limits(self, name: str) -> None:
        """Heal the CPU, memory and descriptor limits still on service ``name`` now (the ledger records when)."""
        for fault in self.ledger.open_faults():
            if isinstance(fault, (CpuLimit, MemoryLimit, DescriptorLimit)) and fault.target == name:
                self.ledger.heal(fault)

    def check_healthy(self) -> None:
        """Every service runs and the API reports healthy within ``healthy_timeout`` s."""
        self.stack.ensure_running(self.settings.start_timeout)
        if self.cluster is not None:  # a node that rejoined in the last scenario may still be catching up
            self.cluster.check_whole(self.settings.start_timeout)
        wait_for_health(self.stack.health_url, HEALTHY, self.settings.healthy_timeout)

    def random_service(self, seed: int | None = None) -> str:
        """A service name picked at random (the pick is noted for the evidence)."""
        name = random.Random(seed).choice(self.stack.names)
        self.notes["random service"] = name
        return name

    # -- load --------------------------------------------------------------------
    def start_load(self, spec: LoadSpec) -> None:
        """Start a background load; one per scenario."""
        if self.load is not None:
            raise CheckFailed("a load is already running in this scenario; use one load step")
        self.load = start_engine_load(spec, self.work_dir, self.settings)
        self.notes["load engine"] = describe_engine(self.load)
        # a baseline before any fault: the phases "before" is measured on it, and a stack
        # that cannot serve the load at all is told apart from one that a fault broke
        baseline = self.settings.load_baseline
        load = self.load
        progress = wait_until(
            lambda: load.progress,
            baseline + 10.0,
            "the load's baseline",
            done=lambda seen: seen.get("t", 0) >= baseline,
        )
        if not progress.get("ok"):
            raise CheckFailed(
                f"the API served none of the load's {progress.get('sent', 0)} requests in its "
                f"{baseline:g} s baseline, before any fault"
            )

    def open_load(self, rate: float) -> LoadSpec:
        """An open-model load of ``rate`` requests per second against the stack's API."""
        return LoadSpec.open_rate(self.stack.load_url or self.stack.api_url, rate, **self._load_options())

    def closed_load(self, users_count: int) -> LoadSpec:
        """A closed-model load of ``users_count`` concurrent users against the stack's API."""
        return LoadSpec.closed_users(self.stack.load_url or self.stack.api_url, users_count, **self._load_options())

    def _load_options(self) -> dict:
        s = self.settings
        return {
            "workload": self.stack.workload.to_dict(),
            "write_fraction": s.load_write_fraction,
            "request_timeout": s.load_request_timeout,
            "max_duration": s.load_max_duration,
            "allow_remote": s.allow_remote_targets,
            "malformed_share": self.malformed_percent / 100.0,
            "malformed_after": s.load_baseline,
        }

    def set_malformed(self, percent: float) -> None:
        """Send ``percent`` % of the load malformed, from the end of its baseline on; before the load starts."""
        if self.load is not None:
            raise CheckFailed("say how much of the load is malformed before the step that starts the load")
        if not 0 < percent < 100:
            raise CheckFailed(f"a malformed share is more than 0% and less than 100% of the load, not {percent:g}%")
        self.malformed_percent = percent

    def let_load_run(self, seconds: float) -> None:
        """Return once the load has run ``seconds`` more (by its own clock), with nothing else happening."""
        if self.load is None:
            raise CheckFailed(NO_LOAD)
        load = self.load
        until = load.progress.get("t", 0.0) + seconds
        wait_until(lambda: load.progress, seconds + 10.0, "the load's run", done=lambda seen: seen.get("t", 0) >= until)

    def observed(self, bound: float | None = None) -> list[Request]:
        """The load's history, stopping the load first if it still runs.

        The load is kept running until it shows recovery after the last fault
        (the rule of :class:`support.load.recovery.RecoveryRule`) or until ``bound``
        seconds (default ``settle_timeout``) plus the rule's span have passed
        since the fault, so that a Then step never judges a cut-short history.
        """
        if self.history is not None:
            return self.history
        if self.load is None:
            raise CheckFailed(NO_LOAD)
        s = self.settings
        reference = self._reference()
        wait = (bound if bound is not None else s.settle_timeout) + s.recovery_min_span + 1.0
        self.history = self.load.finish(
            after=reference,
            min_successes=s.recovery_min_successes,
            min_span=s.recovery_min_span,
            deadline=reference + wait,
        )
        return self.history

    def stop_load(self) -> None:
        """Stop the load if it runs, keeping its history (idempotent)."""
        if self.load is not None and self.history is None:
            self.history = self.load.stop()
        if self.cluster is not None:  # the cluster's watch, like the load, observes no longer
            self.cluster.close()

    def _reference(self) -> float:
        windows = self.ledger.windows()
        if not windows:
            return time.monotonic()
        last = windows[-1]
        return last.recovery_reference if last.recovery_reference is not None else time.monotonic()

    # -- records -------------------------------------------------------------------
    def create_users(self, count: int) -> None:
        """Create ``count`` records through the API; each must be acknowledged."""
        self.users = users.create_users(self.stack.api_url, self.stack.workload, count)

    def try_duplicate_write(self) -> None:
        """Try to create a record whose key is taken; the answer is kept for the Then step."""
        self.response = users.try_duplicate_write(self.stack.api_url, self.stack.workload, self.users)

    # -- judgements: each calls one checker of support.checks and keeps its result ----------
    def check_recovered_within(self, seconds: float) -> None:
        """The API recovered within ``seconds`` of the last fault (its heal, or the act for instant ones)."""
        recovery_checks.check_recovered_within(self._measure_recovery(seconds), seconds, history=self.history)

    def check_recovered_within_share(self, seconds: float, percent: float) -> None:
        """At least ``percent`` % of the runs of this scenario recovered within ``seconds``; judged at the
        last run (``-D repeat=N`` or ``@repeat.N``), recorded by the runs before it."""
        measured = self._measure_recovery(seconds)
        run = self.repeat or RepeatRun(repeated_runs.RepeatGroup(self.name, 1), 1)
        run.group.recoveries[run.run] = measured.recovery_time if measured.recovered else None
        repeated_runs.check_share_recovered_within(run.group, run.run, seconds, percent)

    def _measure_recovery(self, seconds: float) -> Recovery:
        windows = self.ledger.windows()
        if not windows:
            raise CheckFailed(no_fault("nothing to recover from"))
        history = self.observed(seconds)
        s = self.settings
        self.recovery = recovery_checks.recovery(
            history,
            windows[-1].recovery_reference,
            since=windows[0].injected,
            min_successes=s.recovery_min_successes,
            min_span=s.recovery_min_span,
        )
        return self.recovery

    def check_no_lost_writes(self) -> None:
        """Every write the API acknowledged is in PostgreSQL with the content sent."""
        history = self.observed()
        keys = durable.written_keys(history)
        # a service that hides an outage from its clients may be judged before PostgreSQL is back
        rows = retry(
            lambda: database.rows_for_keys(self.stack.admin_dsn, self.stack.workload, keys),
            self.settings.start_timeout,
            "PostgreSQL accepting the durability read-back",
            retry_on=database.DatabaseError,
        )
        self.durability = durable.durability(history, rows)
        durable.check_no_lost_writes(self.durability)
        if self.cluster is not None:  # read back from every node too, once they agree
            acknowledged = [r.key for r in history if r.op == "write" and r.outcome == "ok"]
            self.cluster.check_every_node_holds(history, list(dict.fromkeys(acknowledged)))

    def check_processed_within(self, seconds: float) -> None:
        """Every write the load saw acknowledged is processed (the workload's ``processed_sql``) within ``seconds``
        of the last fault's end."""
        processing.check_processed_within(
            self.stack.admin_dsn, self.stack.workload, self.observed(), self._reference(), seconds
        )

    def check_error_rate_below(self, percent: float) -> None:
        """Fewer than ``percent`` % of the load's requests were non-ok."""
        error_rates.check_error_rate_below(self.observed(), percent)

    def check_no_request_slower_than(self, seconds: float) -> None:
        """No request of the load took longer than ``seconds`` or timed out."""
        latency.check_no_request_slower_than(self.observed(), seconds)

    def check_failures_are_503(self) -> None:
        """Every non-ok request of the load was answered 503."""
        statuses.check_failures_are_503(self.observed())

    def check_writes_refused_reads_served(self) -> None:
        """While the last fault acted, writes were answered 503 and reads were served."""
        during_faults.check_writes_refused_reads_served(self.observed(), during_faults.effect_window(self.ledger))

    def check_answers_within_during_faults(self, seconds: float) -> None:
        """Every request started while the faults lasted was answered within ``seconds``."""
        during_faults.check_answers_within_during_faults(
            self.observed(), during_faults.fault_span(self.ledger), seconds
        )

    def check_no_failures_after_fault(self) -> None:
        """No request that started after the last fault stopped acting failed."""
        statuses.check_no_failures_after(self.observed(), during_faults.fault_over(self.ledger), "the fault")

    def check_malformed_refused(self) -> None:
        """Every malformed request of the load was answered with a 4xx."""
        hostile_input.check_malformed_refused(self.observed())

    def check_well_formed_error_rate_below(self, percent: float) -> None:
        """Fewer than ``percent`` % of the well-formed requests failed while malformed ones were sent."""
        hostile_input.check_well_formed_error_rate_below(self.observed(), percent)

    def check_well_formed_latency_kept(self) -> None:
        """The well-formed requests' p99 latency beside malformed ones stayed within its bound of the one before."""
        hostile_input.check_well_formed_latency_kept(self.observed())

    def check_no_in_flight_dropped(self) -> None:
        """Every request in flight at the last graceful restart's stop signal was answered; failures stayed in its drain window."""
        restarts = in_flight.graceful_restarts([e.fault for e in self.ledger.entries])  # a rolling one: each
        drain = in_flight.check_no_in_flight_dropped(self.observed(), restarts)
        self.notes["requests in flight at the stop signal"] = len(drain.in_flight)

    def check_health_within(self, expect: str, seconds: float) -> None:
        """The health endpoint reports ``expect`` (``healthy`` or ``unreachable``) within ``seconds``;
        the answer that showed it is noted for the evidence."""
        self.notes["health"] = wait_for_health(self.stack.health_url, expect, seconds).describe()

    def check_healthy_within(self, seconds: float) -> None:
        """The health endpoint reports healthy within ``seconds``."""
        self.check_health_within(HEALTHY, seconds)

    def check_database_unreachable_within(self, seconds: float) -> None:
        """The health endpoint reports the database as unreachable within ``seconds``."""
        self.check_health_within(UNREACHABLE, seconds)

    def check_next_request_succeeds(self) -> None:
        """One read of a record the scenario created is answered 200 with its content."""
        users.check_next_read(self.stack.api_url, self.stack.workload, self.users)

    def check_users_intact(self, count: int) -> None:
        """The first ``count`` records the scenario created are served by the API and stored unchanged."""
        users.check_users_intact(self.stack.api_url, self.stack.admin_dsn, self.stack.workload, self.users[:count])

    def check_write_refused(self, status: int) -> None:
        """The write the scenario tried was answered ``status`` with a JSON body."""
        users.check_status(self.response, status, "the write")

    def check_user_count(self, count: int) -> None:
        """The database holds exactly ``count`` records."""
        users.check_user_count(self.stack.admin_dsn, self.stack.workload, count)

    def figures(self) -> dict:
        """The scenario's measured figures as plain JSON-able values (empty without a load)."""
        if self.history is None:
            return {}
        figures = metrics(self.history, self.ledger.windows(), self.recovery, self.durability)
        if self.cluster is not None:
            figures["cluster"] = self.cluster.figures()
        return figures
