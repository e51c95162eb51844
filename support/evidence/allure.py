"""The evidence adapter: the one module of ``support/`` that talks to Allure.

Everything it attaches is computed elsewhere in ``support/`` and redacted here,
so the library stays testable without a report. Per scenario it attaches the
timeline chart, the figures, the fault ledger, the service logs around the
faults, ``pg_stat_activity`` before, during and after the faults, and the raw
history; on failure also the requests around the failure, the load worker's log
and the health endpoint's last answer. Every text passes through
:func:`support.core.redact.redact` with the stack's secrets.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import allure
import allure_commons
from allure_commons.model2 import Label

from support.checks.health import read_health
from support.checks.metrics import metrics
from support.core.redact import redact
from support.evidence import chart
from support.evidence.report_meta import scenario_labels
from support.evidence.summary import measured_recovery
from support.faults.timeline import FaultWindow
from support.load.history import OK, Request, to_csv
from support.stack import database

if TYPE_CHECKING:
    from support.run.scenario import ScenarioState

__all__ = ["begin_scenario", "attach_scenario", "ActivitySampler", "pick_activity", "add_labels"]

_LOG_MARGIN_S = 5.0
_MAX_INLINE_CSV = 1_000_000
_ACTIVITY_INTERVAL_S = 0.5
_AROUND_FAILURE = 20  # requests shown on each side in the failure evidence

# the sampler of the scenario that runs now, by ScenarioState identity (behave runs one at a time)
_SAMPLERS: dict[int, ActivitySampler] = {}


def _attach_text(state: ScenarioState, text: str, name: str, kind=allure.attachment_type.TEXT) -> None:
    allure.attach(redact(text, state.stack.secrets), name=name, attachment_type=kind)


def _attach_json(state: ScenarioState, data: Any, name: str) -> None:
    _attach_text(state, json.dumps(data, indent=2, default=str), name, allure.attachment_type.JSON)


# -- labels ---------------------------------------------------------------------------


def add_labels(labels: Sequence[tuple[str, str]]) -> bool:
    """Add labels to the Allure test result being written now; a severity replaces the default one.

    allure-behave does not implement ``allure.dynamic.label``, so this reaches
    the result through its listener. Returns False when no Allure result is open.
    """
    for plugin in allure_commons.plugin_manager.get_plugins():
        uuid = getattr(plugin, "current_scenario_uuid", None)
        logger = getattr(plugin, "logger", None)
        if uuid is None or logger is None or not hasattr(logger, "get_test"):
            continue
        result = logger.get_test(uuid)
        if result is None:
            continue
        for name, value in labels:
            if name == "severity":
                result.labels = [lb for lb in result.labels if lb.name != "severity"]
            if not any(lb.name == name and lb.value == value for lb in result.labels):
                result.labels.append(Label(name=name, value=value))
        return True
    return False


# -- pg_stat_activity around the faults --------------------------------------------------


@dataclass
class ActivitySampler:
    """Snapshots of ``pg_stat_activity`` every ``interval`` s in a thread, each stamped with the
    monotonic time it was taken; a failed snapshot (PostgreSQL down or frozen) keeps its error."""

    dsn: str
    interval: float = _ACTIVITY_INTERVAL_S
    samples: list[dict[str, Any]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> ActivitySampler:
        self._thread = threading.Thread(target=self._run, name="pg-activity", daemon=True)
        self._thread.start()
        return self

    def snapshot(self) -> dict[str, Any]:
        """Take one snapshot now (also what the thread does each tick)."""
        taken = time.monotonic()
        try:
            sample: dict[str, Any] = {"t": taken, "wall": time.time(), "rows": database.activity_snapshot(self.dsn)}
        except Exception as error:  # noqa: BLE001 - "the database did not answer" is evidence too
            sample = {"t": taken, "wall": time.time(), "error": " ".join(f"{type(error).__name__}: {error}".split())}
        sample["took_s"] = round(time.monotonic() - taken, 3)
        return sample

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.snapshot())
            # pacing the samples; stop() wakes it at once
            self._stop.wait(self.interval)

    def stop(self, timeout: float = 8.0) -> None:
        """Stop sampling; waits up to ``timeout`` s for a snapshot in progress (connect + statement timeouts)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


def pick_activity(samples: Sequence[dict[str, Any]], windows: Sequence[FaultWindow]) -> list[tuple[str, dict]]:
    """``(title, sample)`` pairs: the last sample before the first fault, for each fault the first
    sample taken while it was held (for an instant fault: the first after it began)."""
    if not windows or not samples:
        return []
    picked: list[tuple[str, dict]] = []
    first = min(w.injected for w in windows)
    before = [s for s in samples if s["t"] < first]
    if before:
        picked.append(("before the fault", before[-1]))
    for w in windows:
        after_start = [s for s in samples if s["t"] >= w.injected]
        held = [s for s in after_start if w.healed is None or s["t"] <= w.healed or w.instant]
        if held:
            picked.append((f"during {w.target} {w.name}", held[0]))
    return picked


def _describe_sample(sample: dict[str, Any], windows: Sequence[FaultWindow]) -> dict[str, Any]:
    first = min(w.injected for w in windows) if windows else None
    out = {"taken_at_epoch_s": round(sample["wall"], 3), "took_s": sample.get("took_s")}
    if first is not None:
        out["seconds_from_first_fault"] = round(sample["t"] - first, 3)
    if "error" in sample:
        out["error"] = sample["error"]
    else:
        out["connections"] = len(sample["rows"])
        out["rows"] = sample["rows"]
    return out


# -- the scenario's life --------------------------------------------------------------


def begin_scenario(state: ScenarioState, filename: str, feature: str, tags: Sequence[str]) -> None:
    """Label the Allure result (feature family, severity) and start sampling database activity."""
    add_labels(scenario_labels(filename, feature, list(tags)))
    _SAMPLERS[id(state)] = ActivitySampler(state.stack.admin_dsn).start()


def _subtitle(figures: dict[str, Any], recovery_text: str) -> str:
    if not figures:
        return ""
    bad = figures.get("fail", 0) + figures.get("info", 0)
    parts = [f"{figures.get('requests', 0)} requests", f"{bad} errors ({figures.get('error_rate_percent', 0):.1f}%)"]
    if recovery_text:
        parts.append(recovery_text)
    durability = figures.get("durability")
    if durability is not None:
        lost = durability["lost"] + durability["changed"]
        parts.append(f"{lost} of {durability['acknowledged']} acknowledged writes lost")
    return " · ".join(parts)


def _attach_chart(state: ScenarioState, figures: dict[str, Any]) -> None:
    history, windows = state.history or [], state.ledger.windows()
    recovery = measured_recovery(state)
    text = ""
    if recovery is not None:
        text = (
            f"recovered after {chart.seconds_text(recovery.recovery_time)}"
            if recovery.recovered and recovery.recovery_time is not None
            else "no recovery observed"
        )
    png = chart.timeline_png(
        history,
        windows,
        recovery,
        title=redact(state.name, state.stack.secrets),
        subtitle=redact(_subtitle(figures, text), state.stack.secrets),
        primaries=state.cluster.bands() if state.cluster is not None else (),
    )
    allure.attach(png, name="timeline chart", attachment_type=allure.attachment_type.PNG)


def _attach_repeats(state: ScenarioState) -> None:
    assert state.repeat is not None
    group = state.repeat.group
    png = chart.repeats_png(group, title=redact(group.name, state.stack.secrets))
    allure.attach(png, name="runs chart", attachment_type=allure.attachment_type.PNG)
    _attach_text(state, group.describe() + "\n", "runs distribution")


def _describe_request(r: Request, origin: float) -> str:
    answer = f"status {r.status}" if r.status is not None else "no answer"
    error = f" {r.error}" if r.error else ""
    return f"{r.start - origin:9.3f} s  {r.op:<5} {r.outcome:<4} {answer}{error}  {r.latency * 1000:8.1f} ms  {r.key}"


def _requests_around_failure(history: Sequence[Request]) -> str:
    origin = min(r.start for r in history)
    bad = [r for r in history if r.outcome != OK]
    lines = [f"{len(history)} requests, {len(bad)} not ok; times are seconds since the load started", ""]
    if len(bad) > 2 * _AROUND_FAILURE:
        lines.append(f"first and last {_AROUND_FAILURE} of the {len(bad)} failed requests:")
        shown = bad[:_AROUND_FAILURE] + [None] + bad[-_AROUND_FAILURE:]
    else:
        lines.append(f"the {len(bad)} failed requests:")
        shown = list(bad)
    lines += ["   ..." if r is None else _describe_request(r, origin) for r in shown]
    lines += ["", f"the last {min(len(history), _AROUND_FAILURE)} requests:"]
    lines += [_describe_request(r, origin) for r in history[-_AROUND_FAILURE:]]
    return "\n".join(lines) + "\n"


def _attach_activity(state: ScenarioState, sampler: ActivitySampler | None, failed: bool) -> None:
    windows = state.ledger.windows()
    if sampler is not None:
        sampler.stop()
        for title, sample in pick_activity(sampler.samples, windows):
            _attach_json(state, _describe_sample(sample, windows), f"pg_stat_activity {title}")
    if windows or failed:
        after = ActivitySampler(state.stack.admin_dsn).snapshot()
        _attach_json(state, _describe_sample(after, windows), "pg_stat_activity after the scenario")


def _attach_failure(state: ScenarioState) -> None:
    if state.history:
        _attach_text(state, _requests_around_failure(state.history), "requests around the failure")
    if state.load is not None:
        try:
            log = state.load.log_path.read_text(errors="replace")
        except OSError:
            log = ""
        if log:
            _attach_text(state, log[-100_000:], "load worker log")
    reading = read_health(state.stack.api_url, timeout=2.0)
    _attach_json(
        state,
        {"status": reading.status, "body": reading.body, "seconds": round(reading.seconds, 3), "error": reading.error},
        "health endpoint at the end",
    )


def _figures(state: ScenarioState) -> dict[str, Any]:
    """The scenario's figures, with the recovery measured by the suite's rule even when no step judged it, and
    the replicated database's (failover, rejoin, writes lost per node, who was primary when) on a stack with one."""
    if not state.history:
        return {}
    figures = metrics(state.history, state.ledger.windows(), measured_recovery(state), state.durability)
    if state.cluster is not None:
        figures["cluster"] = state.cluster.figures()
    return figures


def attach_scenario(state: ScenarioState, failed: bool) -> None:
    """Attach the scenario's evidence (see the module doc); each part is attached even if another fails."""
    sampler = _SAMPLERS.pop(id(state), None)
    problems: list[str] = []

    def attempt(part: Callable[[], None]) -> None:
        try:
            part()
        except Exception as error:  # noqa: BLE001 - one missing piece must not lose the others
            problems.append(f"{getattr(part, '__name__', 'part')}: {type(error).__name__}: {error}")

    figures: dict[str, Any] = {}

    def compute_figures() -> None:
        figures.update(_figures(state))

    attempt(compute_figures)
    if state.repeat is not None:  # which run; the last one carries the distributions of all runs
        figures["repeat"] = {"run": state.repeat.run, "runs": state.repeat.group.runs}
        if state.repeat.last:
            figures["repeats"] = state.repeat.group.to_dict()
            attempt(lambda: _attach_repeats(state))
    if state.history:
        attempt(lambda: _attach_chart(state, figures))
    if figures:
        attempt(lambda: _attach_json(state, figures, "figures.json"))
    if state.ledger.entries:
        attempt(lambda: _attach_json(state, state.ledger.as_records(), "fault ledger.json"))
    if state.notes:
        attempt(lambda: _attach_json(state, state.notes, "notes.json"))
    attempt(lambda: _attach_activity(state, sampler, failed))
    attempt(lambda: _attach_logs(state, failed))
    attempt(lambda: _attach_history(state))
    if failed:
        attempt(lambda: _attach_failure(state))
    if problems:
        _attach_text(state, "\n".join(problems), "evidence errors")


def _attach_logs(state: ScenarioState, failed: bool) -> None:
    ledger = state.ledger.as_records()
    if ledger or failed:
        since = min((r["injected_at"] for r in ledger), default=None)
        since = None if since is None else since - _LOG_MARGIN_S
        for name in state.stack.names:
            logs = state.stack.service(name).logs(since)
            _attach_text(state, logs[-200_000:], f"{name} log")


def _attach_history(state: ScenarioState) -> None:
    if state.history:
        csv_text = redact(to_csv(state.history), state.stack.secrets)
        if len(csv_text) > _MAX_INLINE_CSV:
            allure.attach(gzip.compress(csv_text.encode()), name="history.csv.gz", extension="csv.gz")
        else:
            allure.attach(csv_text, name="history.csv", attachment_type=allure.attachment_type.CSV)
