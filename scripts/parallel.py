"""Run the suite's scenarios on several isolated stacks at once: one Allure folder, one JUnit folder,
one run summary and one exit code, as a serial ``behave`` run gives.

    .venv/bin/python -m scripts.parallel --processes 3 --tags=@chaos [other behave options and paths]

The runner's own options: ``--processes N`` (stacks at once, default 3), ``--timeout S`` (the whole
run's deadline, default 3600 s) and ``--logs DIR`` (the stacks' output, default reports/parallel); the
others are behave's and mean what they mean to ``behave``. The runner reads them with behave's own ``Configuration`` (so ``behave.ini`` counts),
selects the scenarios with behave's own filters (tags, names, ``file:line``), and refuses a bad run
(a step no definition matches, a service the stack does not have, no scenario selected) in one line
before anything starts, with the same checks ``before_all`` makes. It then starts one ``behave``
process per stack (``python -m behave ... file:line file:line ...``), each starting its own stack
as a serial run does (its own run directory, free ports, PostgreSQL and fault proxy), so no two
scenarios that run at the same time share a stack; a stack runs its share one scenario after the
other. The shares are balanced longest first onto the least loaded stack, by the scenarios' durations
in the previous run's ``summary.json`` in the results folder, else by an estimate from their steps
(the seconds they hold a fault or a load, plus 2 s), each plus 1 s of hooks. Scenarios tagged
``@serial`` (heavy load, resource faults, HA: whatever must not share the machine) run alone after the
others: on the least loaded stack, after its share, behind a gate (scripts/parallel_gate.py) that
opens once every other stack's ``behave`` has exited, so no stack is started for them alone; on a
stack of their own after the others when that cannot be (they are the only ones, a ``--runner`` of
the user's, or their file is the share's only one: behave would merge them into one feature). The
stacks of a phase start their first scenarios together, once every one of them is up, so that no
first scenario shares the machine with another stack's start (the same gated runner).

Each stack writes Allure results and JUnit XML into a folder of its own; at the end they are moved
into the run's Allure folder (behave.ini's, or ``-o`` of an Allure ``-f``) and JUnit folder (one
XML file per feature, a feature split across stacks merged back into one), the summary rows of all
stacks are printed as one table and written as one ``summary.json``. A stack's own output goes to
``reports/parallel/stack-N.log`` (``--logs``). The exit code is a serial run's: 0 all passed, 1 a scenario
failed, 2 the run could not start or proved nothing, 128 + the signal after SIGINT/SIGTERM/SIGHUP.

SIGINT, SIGTERM or SIGHUP to the runner is passed to every stack's ``behave``, which heals and stops
its stack as a serial run does; each also gets SIGTERM if the runner dies (``PR_SET_PDEATHSIG``),
and a run killed with SIGKILL is cleaned by its reaper and the next run, as any run.

Why not behavex (``--parallel-processes N --parallel-scheme scenario``): see bench/README.md
("Parallel runs"); in short, it starts one behave per scenario, so ``before_all`` empties the shared
Allure folder and writes its own ``summary.json`` for every scenario, it passes ``-D worker_id``
(an unknown setting here), and a failed start (``os._exit(2)``) breaks its process pool.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from behave.configuration import DEFAULT_RUNNER_CLASS_NAME as DEFAULT_RUNNER
from behave.configuration import Configuration, setup_parser
from behave.runner import Runner
from behave.runner_util import parse_features
from behave.step_registry import registry

from scripts.parallel_gate import GATE, GATE_S, SERIAL_TAG, START, UP
from support.core.waiting import Deadline
from support.evidence import report_meta
from support.evidence.summary import ScenarioRow, format_table, summary_json
from support.run.startup_errors import STARTUP_ERRORS, check_run, one_line

__all__ = [
    "Selected", "plan", "estimate_s", "host_order", "child_argv", "merge_junit", "merge_allure", "merged_rows",
    "run_exit_code", "main",
]  # fmt: skip

ALLURE = "allure_behave.formatter:AllureFormatter"
GATED_RUNNER = "scripts.parallel_gate:GatedRunner"
LOGS = Path("reports/parallel")
REPO = Path(__file__).resolve().parents[1]
BASE_ESTIMATE = 2.0  # s a scenario's steps take besides the seconds its steps hold a fault or a load (27 measured)
PER_SCENARIO = 1.0  # s of hooks around each scenario (isolation, reset, heal, evidence) that summary.json leaves out
_HELD = re.compile(r"\bfor (\d+(?:\.\d+)?) seconds?\b")
STOP_GRACE = 90.0  # s a stack's behave gets to heal and stop after a signal, before SIGKILL (its reaper cleans up)
_METADATA = ("environment.properties", "categories.json", "executor.json")


class RunError(Exception):
    """The parallel run cannot start; the message is one line saying what to fix."""


@dataclass(frozen=True)
class Selected:
    """A scenario the run selected: its ``file:line`` location, feature and scenario names, effective tags."""

    location: str
    feature: str
    name: str
    tags: frozenset[str] = frozenset()
    estimate: float = BASE_ESTIMATE  # s its steps are expected to take when no earlier run says (estimate_s)

    @property
    def serial(self) -> bool:
        return SERIAL_TAG in self.tags


@dataclass
class Stack:
    """One stack's ``behave`` process and where it writes."""

    label: str
    scenarios: list[Selected]
    work: Path
    log: Path
    gate: Path | None = None  # made when the other stacks have exited: this stack's @serial scenarios may start
    start_gate: Path | None = None  # made when every stack of its phase is up: the first scenarios may start

    @property
    def up(self) -> Path:
        return self.work / "up"  # made by the stack's runner when its stack is up (scripts/parallel_gate.py)

    proc: subprocess.Popen | None = None
    started: float = 0.0
    ended: float | None = None
    code: int | None = None

    @property
    def results(self) -> Path:
        return self.work / "allure-results"

    @property
    def junit(self) -> Path:
        return self.work / "junit"


@dataclass
class Outcome:
    """What the runner saw: each stack's exit code, the signal that stopped the run (0: none)."""

    stacks: list[Stack] = field(default_factory=list)
    signum: int = 0
    refused: str = ""


# -- reading the run: behave's configuration, the selected scenarios, the same checks as before_all --


@dataclass(frozen=True)
class Options:
    """The runner's own options: how many stacks at once, the run's deadline (s), where the stacks' logs go."""

    processes: int
    timeout: float
    logs: Path


def parse_args(argv: list[str]) -> tuple[Options, list[str]]:
    """``--processes N``, ``--timeout S`` and ``--logs DIR`` of the runner; the rest is behave's."""
    parser = argparse.ArgumentParser(prog="python -m scripts.parallel", add_help=False, allow_abbrev=False)
    parser.add_argument("--processes", default="3")
    parser.add_argument("--timeout", default="3600")
    parser.add_argument("--logs", default=str(LOGS))
    own, rest = parser.parse_known_args(argv)
    try:
        processes = int(own.processes)
        timeout = float(own.timeout)
    except ValueError:
        raise RunError(f"--processes {own.processes} --timeout {own.timeout}: both must be numbers") from None
    if processes < 1:
        raise RunError(f"--processes {processes}: the number of stacks must be 1 or more (3 suits 2 cores)")
    if timeout <= 0:
        raise RunError(f"--timeout {own.timeout}: seconds the whole run may take, more than 0")
    return Options(processes, timeout, Path(own.logs)), rest


def behave_config(args: list[str]) -> Configuration:
    """behave's configuration of ``args`` (behave.ini included); a wrong option is refused in one line."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured), contextlib.redirect_stdout(captured):
            config = Configuration(command_args=list(args))
    except SystemExit:
        lines = [line for line in captured.getvalue().splitlines() if "error:" in line] or ["bad behave options"]
        raise RunError(lines[-1].split("error:", 1)[1].strip() + " (see python -m behave --help)") from None
    problems = [line.split(":", 1)[1].strip() for line in captured.getvalue().splitlines() if "CONFIG-ERROR:" in line]
    if len(config.outfiles or []) > len(config.format or []):
        problems.append(f"more outfiles ({len(config.outfiles)}) than formatters ({len(config.format)})")
    if problems:  # a stack's behave would stop at it with only this in its log
        raise RunError(f"{problems[0]}: give each -o a -f before it (behave.ini's come first)")
    return config


def select(config: Configuration) -> list[Selected]:
    """The scenarios ``config`` selects, in file order, after the checks ``before_all`` makes."""
    runner = Runner(config)
    runner.step_registry = registry  # behave sets it only when it runs the model
    with runner.path_manager:
        runner.setup_paths()
        runner.load_hooks()  # environment.py registers the Gherkin parameter types the steps use
        runner.load_step_definitions()
        locations = [loc for loc in runner.feature_locations() if not config.exclude(loc)]
        features = parse_features(locations, language=config.lang)
        check_run(features, config, runner.step_registry.find_match)
    return [
        Selected(
            f"{s.filename}:{s.line}",
            feature.name,
            s.name,
            frozenset(s.effective_tags),
            estimate_s(step.name for step in s.all_steps),
        )
        for feature in features
        if feature.should_run(config)
        for s in feature.walk_scenarios()
        if s.should_run(config)
    ]


def estimate_s(steps) -> float:
    """Seconds a scenario's steps are expected to take without an earlier run's figure: the seconds its
    steps hold something (``for N seconds``: a fault, a load) plus BASE_ESTIMATE. On the 27 ``@chaos``
    scenarios of a quiet serial run this is within 1.5 s of the measured time for 22 of them, within
    3.5 s for all (the restarts' waits are the rest)."""
    return BASE_ESTIMATE + sum(float(n) for step in steps for n in _HELD.findall(step))


def cost_s(scenario: Selected, durations: dict[tuple[str, str], float]) -> float:
    """Seconds ``scenario`` is expected to keep its stack busy: an earlier run's duration (else the
    estimate) plus PER_SCENARIO of hooks."""
    return durations.get((scenario.feature, scenario.name), scenario.estimate) + PER_SCENARIO


def plan(
    scenarios: list[Selected], processes: int, durations: dict[tuple[str, str], float] | None = None
) -> tuple[list[list[Selected]], list[Selected]]:
    """The scenarios split into at most ``processes`` shares for the stacks that run at once (each in
    file order, the least loaded first), and the ``@serial`` ones. Longest first onto the share with
    the least work so far (:func:`cost_s`: ``durations`` in seconds by (feature, scenario) name, from an
    earlier run, else each scenario's estimate)."""
    durations = durations or {}
    serial = [s for s in scenarios if s.serial]
    rest = [s for s in scenarios if not s.serial]
    shares: list[list[Selected]] = [[] for _ in range(min(processes, len(rest)))]
    load = [0.0] * len(shares)
    order = {s: i for i, s in enumerate(scenarios)}
    for scenario in sorted(rest, key=lambda s: (-cost_s(s, durations), order[s])):
        least = load.index(min(load))
        shares[least].append(scenario)
        load[least] += cost_s(scenario, durations)
    ranked = sorted(range(len(shares)), key=lambda i: (load[i], i))
    return [sorted(shares[i], key=order.__getitem__) for i in ranked], serial


def _file(scenario: Selected) -> str:
    return scenario.location.rsplit(":", 1)[0]


def host_order(share: list[Selected], serial: list[Selected]) -> list[Selected] | None:
    """``share`` then ``serial``, arranged so that behave runs the ``@serial`` scenarios as features of
    their own (it merges consecutive locations of one file into one feature, and the gate is before a
    feature); None when that cannot be (every scenario of ``share`` is in the file all of ``serial`` are
    in). Each part keeps file order, a file's locations together."""
    if not share or not serial:
        return [*share, *serial] if serial else list(share)
    files = [_file(s) for s in serial]
    first = next((f for f in files if f != _file(share[-1])), None)
    if first is not None:  # start the serial part with a file the share does not end with
        return [*share, *sorted(serial, key=lambda s: _file(s) != first)]
    lead = [s for s in share if _file(s) == files[0]]
    others = [s for s in share if _file(s) != files[0]]
    return [*lead, *others, *serial] if others else None


def previous_durations(results: Path | None) -> dict[tuple[str, str], float]:
    """Seconds each scenario took in the last run whose ``summary.json`` is in ``results``."""
    try:
        rows = json.loads((results / "summary.json").read_text())["rows"] if results else []
        return {(r["feature"], r["name"]): float(r["duration_s"]) for r in rows}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


# -- one stack's behave --


def without_paths(args: list[str]) -> list[str]:
    """``args`` less the feature paths given on the command line (each stack gets its own ``file:line``)."""
    with contextlib.redirect_stderr(io.StringIO()):
        paths = list(setup_parser().parse_args(args).paths or [])
    kept = list(args)
    for path in paths:
        at = len(kept) - 1 - kept[::-1].index(path)  # positional: the last occurrence
        del kept[at]
    return kept


def child_argv(args: list[str], config: Configuration, stack: Stack) -> list[str]:
    """``python -m behave`` for ``stack``: the user's options, its locations, Allure and JUnit into its
    folder, and the gated runner (scripts/parallel_gate.py) when it runs ``@serial`` scenarios after its share.

    behave pairs ``-o`` with ``-f`` by position (behave.ini's first): the formats without an outfile get
    stdout (``-o -``) so the Allure formatter added last gets the stack's folder; the suite keeps that
    last Allure formatter (:func:`support.evidence.report_meta.one_allure_formatter`)."""
    pad = ["-o", "-"] * max(0, len(config.format or []) - len(config.outfiles or []))
    junit = ["--junit", "--junit-directory", str(stack.junit)] if config.junit else ["--no-junit"]
    gated = ["--runner", GATED_RUNNER] if stack.gate is not None or stack.start_gate is not None else []
    return [
        sys.executable, "-m", "behave", *without_paths(args), *(s.location for s in stack.scenarios),
        *pad, "-f", ALLURE, "-o", str(stack.results), *junit, *gated,
    ]  # fmt: skip


def child_env(stack: Stack, timeout: float) -> dict[str, str]:
    """The runner's environment, with this repository importable (the gated runner is its module) and,
    for a stack with a gate, where the gate is and how long to wait for it (s)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    for name in (GATE, UP, START):
        env.pop(name, None)
    env[GATE_S] = f"{timeout:.0f}"
    if stack.gate is not None:
        env[GATE] = str(stack.gate)
    if stack.start_gate is not None:
        env[UP], env[START] = str(stack.up), str(stack.start_gate)
    return env


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the runner dies, whatever kills it (Linux prctl)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def start(stack: Stack, argv: list[str], env: dict[str, str] | None = None) -> None:
    """Start ``stack``'s behave in its own session (the runner passes signals on), output in its log."""
    stack.work.mkdir(parents=True, exist_ok=True)
    stack.log.parent.mkdir(parents=True, exist_ok=True)
    with open(stack.log, "wb") as log:
        stack.proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent, env=env
        )
    stack.started = time.monotonic()


def _reap(stacks: list[Stack]) -> list[Stack]:
    ended = []
    for stack in stacks:
        if stack.proc is not None and stack.code is None and stack.proc.poll() is not None:
            stack.code, stack.ended = stack.proc.returncode, time.monotonic()
            ended.append(stack)
    return ended


def run_stacks(stacks: list[Stack], argvs: list[list[str]], deadline: Deadline, outcome: Outcome) -> None:
    """Start ``stacks`` at once and wait for all (a stack that cannot start stops the others); a
    stack's gate is made once every other stack has exited."""
    for stack, argv in zip(stacks, argvs):
        start(stack, argv, child_env(stack, deadline.remaining()))
    outcome.stacks.extend(stacks)
    while any(s.code is None for s in stacks):
        for stack in _reap(stacks):
            report_stack(stack)
            if stack.code == 2 and not outcome.signum:  # a start refused: as a serial run, the run stops
                outcome.refused = outcome.refused or _refusal(stack.log)
                stop(stacks, signal.SIGTERM)
        start_gates = {s.start_gate for s in stacks if s.start_gate is not None and not s.start_gate.exists()}
        for start_gate in start_gates:  # every stack up (or gone): the first scenarios start together
            if all(s.up.exists() or s.code is not None for s in stacks if s.start_gate == start_gate):
                start_gate.touch()
        for stack in stacks:
            others_done = all(s.code is not None for s in stacks if s is not stack)
            if stack.gate is not None and stack.code is None and others_done and not stack.gate.exists():
                stack.gate.touch()
                print(
                    f"chaos-suite: {stack.label}: the other stacks are done; its @{SERIAL_TAG} scenarios may start",
                    flush=True,
                )
        if deadline.expired and not outcome.signum:
            print("chaos-suite: the parallel run passed --timeout; stopping every stack", file=sys.stderr)
            outcome.signum = signal.SIGTERM
            stop(stacks, signal.SIGTERM)
        time.sleep(0.1)  # polling the children's exit with the run's deadline above


def stop(stacks: list[Stack], signum: int) -> None:
    """Pass ``signum`` to every running stack's behave; SIGKILL those still running after STOP_GRACE s."""
    for stack in stacks:
        if stack.proc is not None and stack.code is None:
            with contextlib.suppress(ProcessLookupError):
                stack.proc.send_signal(signum)
    grace = Deadline(STOP_GRACE)
    while any(s.proc is not None and s.code is None for s in stacks) and not grace.expired:
        for stack in _reap(stacks):
            report_stack(stack)
        time.sleep(0.1)
    for stack in stacks:
        if stack.proc is not None and stack.code is None:
            stack.proc.kill()
            stack.code, stack.ended = stack.proc.wait(timeout=10), time.monotonic()
            print(f"chaos-suite: {stack.label} did not stop within {STOP_GRACE:g} s; killed", file=sys.stderr)


def _refusal(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("chaos-suite: ")]
    return lines[-1] if lines else f"chaos-suite: a stack could not start; see {log}"


def _rows_of(results: Path) -> list[ScenarioRow]:
    try:
        return [ScenarioRow(**row) for row in json.loads((results / "summary.json").read_text())["rows"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def report_stack(stack: Stack) -> None:
    """One line when a stack's behave ends: its scenarios' verdicts, its time and its log."""
    rows = _rows_of(stack.results)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    verdicts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no scenario finished"
    took = (stack.ended or time.monotonic()) - stack.started
    print(f"chaos-suite: {stack.label}: {verdicts} in {took:.1f} s (exit {stack.code}); log {stack.log}", flush=True)


# -- one report from all stacks --


def merge_allure(sources: list[Path], into: Path) -> int:
    """Move the Allure results of every stack into ``into`` (the environment, categories and executor
    files once); returns how many results (``*-result.json``) there are."""
    into.mkdir(parents=True, exist_ok=True)
    for source in sources:
        for item in sorted(source.glob("*")) if source.is_dir() else []:
            if item.name == "summary.json" or (item.name in _METADATA and (into / item.name).exists()):
                continue
            shutil.move(str(item), into / item.name)
    return len(list(into.glob("*-result.json")))


def merge_junit(sources: list[Path], into: Path) -> list[Path]:
    """One JUnit XML file per feature in ``into``: a file that several stacks wrote (a feature split
    across stacks) gets all their test cases and the sums of their counts and times."""
    into.mkdir(parents=True, exist_ok=True)
    by_name: dict[str, list[Path]] = {}
    for source in sources:
        for path in sorted(source.glob("*.xml")) if source.is_dir() else []:
            by_name.setdefault(path.name, []).append(path)
    written = []
    for name, paths in sorted(by_name.items()):
        suites = [ET.parse(path).getroot() for path in paths]
        merged = suites[0]
        for other in suites[1:]:
            merged.extend(list(other))
            for count in ("tests", "errors", "failures", "skipped"):
                merged.set(count, str(int(merged.get(count, "0")) + int(other.get(count, "0"))))
            merged.set("time", f"{float(merged.get('time', '0')) + float(other.get('time', '0')):.6f}")
        ET.ElementTree(merged).write(into / name, encoding="utf-8", xml_declaration=True)
        written.append(into / name)
    return written


def merged_rows(sources: list[Path], selected: list[Selected]) -> list[ScenarioRow]:
    """The summary rows of every stack, in the order a serial run would have run them."""
    order = {(s.feature, s.name): i for i, s in enumerate(selected)}
    rows = [row for source in sources for row in _rows_of(source)]
    return sorted(rows, key=lambda r: order.get((r.feature, r.name), len(order)))


def run_exit_code(codes: list[int | None], signum: int = 0) -> int:
    """The run's exit code from its stacks' (a serial run's rules): the signal's, else a code other
    than 0/1 (the run could not start), else 1 if a scenario failed, else 0."""
    if signum:
        return 128 + signum
    odd = [c for c in codes if c not in (0, 1)]
    if odd:
        return 2 if any(c is None or c < 0 for c in odd) else int(odd[0])  # type: ignore[arg-type]
    return 1 if 1 in codes else 0


# -- the run --


def run(argv: list[str]) -> int:
    """The whole parallel run; returns its exit code."""
    started = time.monotonic()
    options, args = parse_args(argv)
    config = behave_config(args)
    if config.dry_run or config.steps_catalog:
        raise RunError("--dry-run and --steps-catalog run nothing in parallel: use python -m behave for them")
    selected = select(config)
    results = report_meta.results_dir(config.format or [], config.outfiles or [])
    junit = Path(config.junit_directory) if config.junit else None
    shares, serial = plan(selected, options.processes, previous_durations(results))
    hosted = host_order(shares[0], serial) if shares and serial and config.runner == DEFAULT_RUNNER else None
    print(
        f"chaos-suite: {len(selected) - len(serial)} scenarios on {len(shares)} stacks at once"
        + (f", then {len(serial)} @{SERIAL_TAG} alone on stack 1 when the others are done" if hosted else "")
        + (f", then {len(serial)} @{SERIAL_TAG} on one stack alone" if serial and not hosted else ""),
        flush=True,
    )
    report_meta.prepare_results_dir(results)
    report_meta.prepare_junit_dir(junit)
    shutil.rmtree(options.logs, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix="chaos-suite-parallel-"))
    outcome = Outcome()

    def interrupted(signum, frame):  # passed on to the stacks; the run goes on until they have stopped
        outcome.signum = outcome.signum or signum
        stop([s for s in outcome.stacks if s.code is None], signum)

    previous = {sig: signal.signal(sig, interrupted) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    deadline = Deadline(options.timeout)
    try:
        # the @serial scenarios go after the least loaded share, behind a gate, on a stack already up;
        # else (the only ones, or a runner of the user's) on a stack of their own after the others
        gate = staging / "serial-gate"
        own_runner = config.runner != DEFAULT_RUNNER
        phases = [[(f"stack {i + 1}", share, None) for i, share in enumerate(shares)]]
        if hosted is not None:
            phases[0][0] = (f"stack 1 (+{len(serial)} @{SERIAL_TAG})", hosted, gate)
        elif serial:
            phases.append([(f"stack {len(shares) + 1} (@{SERIAL_TAG})", serial, None)])
        for phase in (p for p in phases if p):
            if outcome.signum or outcome.refused:
                break
            start_gate = None if own_runner or len(phase) < 2 else staging / f"start-gate-{phases.index(phase)}"
            stacks = [
                Stack(label, share, staging / label.split(" (")[0].replace(" ", "-"),
                      options.logs / f"{label.split(' (')[0].replace(' ', '-')}.log", gate=gated,
                      start_gate=start_gate)
                for label, share, gated in phase
            ]  # fmt: skip
            run_stacks(stacks, [child_argv(args, config, s) for s in stacks], deadline, outcome)
        sources = [s.results for s in outcome.stacks]
        rows = merged_rows(sources, selected)
        if results is not None:
            merge_allure(sources, results)
        if junit is not None:
            merge_junit([s.junit for s in outcome.stacks], junit)
        elapsed = time.monotonic() - started
        sys.stdout.write("\n" + format_table(rows, elapsed))
        if results is not None:
            (results / "summary.json").write_text(json.dumps(summary_json(rows, elapsed), indent=2))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        shutil.rmtree(staging, ignore_errors=True)
    if outcome.refused:
        print(outcome.refused, file=sys.stderr)
    return run_exit_code([s.code for s in outcome.stacks], outcome.signum) if not outcome.refused else 2


def main(argv: list[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except (RunError, *STARTUP_ERRORS) as error:
        print(f"chaos-suite: {one_line(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
