"""The suite's own time: the full ``behave --tags=@chaos`` on each backend, with a per-scenario breakdown.

    python bench/suite_time.py [--quick] [--backends process,docker]

Runs ``python -m behave --tags=@chaos`` as a user does (the repository's
``[behave.userdata]`` settings, the pretty and Allure formatters and JUnit
reports, but all written under /tmp/chaos-suite-bench instead of ``reports/``)
on the process backend, and on the Docker backend (``-D backend=docker``) when
a Docker daemon answers. Two formatters are added: behave's ``json``, whose
step durations give the phases, and :class:`PhaseClock` (this file), which
stamps the moments around behave's hooks that the JSON does not carry.

Phases of a scenario: ``setup`` = the ``before_scenario`` hook (services
running, healthy, table emptied) and Given steps that are not loads;
``baseline`` = Given steps of ``steps/load.py`` (a load and its baseline);
``fault`` = When steps; ``recovery wait`` = in a scenario with a load, its
first Then step (it keeps the load running until the load shows recovery),
and the health polls of ``steps/http.py`` ("... within N seconds");
``checks`` = the other Then steps; ``teardown`` = the ``after_scenario`` hook (stop the load,
heal, services back, evidence). Of the run: ``start`` = launch to the first
scenario (imports, step loading and the stack start in ``before_all``) and
``stop`` = the last scenario's end to the process exit (the stack stopped).

Printed last: the breakdown per scenario, the totals per backend, and the
comparison with QA_Recovery_Testing's 4 to 5 minutes for its seven cases.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from behave.formatter.base import Formatter  # noqa: E402

from bench.common import ROOT, WORK_ROOT, machine, table  # noqa: E402
from support.core.config import read_ini_userdata  # noqa: E402

PHASES = ("setup", "baseline", "fault", "recovery wait", "checks", "teardown")
QA_RECOVERY_TESTING = (240.0, 300.0, 7)  # s for its seven cases, as its README reports
RUN_TIMEOUT = 900.0  # s: a run that takes longer is stopped (SIGTERM, then SIGKILL)
QUICK_FEATURE = "features/database/postgres_restart.feature"


class PhaseClock(Formatter):
    """A behave formatter that writes one JSON line per event with ``time.monotonic()``:
    ``init`` (before ``before_all``), ``scenario`` (before ``before_scenario``), ``match``
    (before a step), ``result`` (after it), ``eof`` (a feature done) and ``close`` (after ``after_all``)."""

    name = "phase_clock"
    description = "monotonic stamps around scenarios and steps, for bench/suite_time.py"

    def __init__(self, stream_opener, config) -> None:
        super().__init__(stream_opener, config)
        self._emit("init")

    def _emit(self, event: str, **fields: object) -> None:
        stream = self.open()
        stream.write(json.dumps({"event": event, "t": time.monotonic(), **fields}) + "\n")
        stream.flush()

    def scenario(self, scenario) -> None:
        self._emit("scenario", name=scenario.name, location=str(scenario.location))

    def match(self, match) -> None:
        self._emit("match")

    def result(self, step) -> None:
        self._emit("result", name=step.name, status=str(getattr(step.status, "name", step.status)))

    def eof(self) -> None:
        self._emit("eof")

    def close(self) -> None:
        self._emit("close")
        self.close_stream()


@dataclass
class ScenarioTime:
    name: str
    status: str
    phases: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))

    @property
    def total(self) -> float:
        return sum(self.phases.values())


@dataclass
class RunTime:
    backend: str
    wall: float
    start: float
    stop: float
    exit_code: int
    scenarios: list[ScenarioTime]

    @property
    def passed(self) -> int:
        return sum(s.status == "passed" for s in self.scenarios)


def step_phase(step: dict, has_load: bool, first_then: bool) -> str:
    """The phase of one step of behave's JSON output. ``has_load``: the scenario starts a load;
    ``first_then``: this is its first Then step, which stops the load once it shows recovery."""
    kind = step.get("step_type", step.get("keyword", "")).strip().lower()
    module = step_module(step)
    if kind == "given":
        return "baseline" if module == "load" else "setup"
    if kind == "when":
        return "fault"
    if has_load and first_then:
        return "recovery wait"
    # the health polls ("... within N seconds") wait for recovery as well
    return "recovery wait" if module == "http" and " within " in f" {step.get('name', '')} " else "checks"


def step_module(step: dict) -> str:
    """The step module a JSON step matched (``load`` for ``steps/load.py``; behave gives the path relative
    to its working directory); empty when unknown."""
    location = Path(step.get("match", {}).get("location", "").rsplit(":", 1)[0])
    return location.stem if location.parent.name == "steps" else ""


def breakdown(
    json_path: Path, clock_path: Path, launched: float, ended: float, backend: str, exit_code: int
) -> RunTime:
    """Phases per scenario from behave's JSON (steps) and the PhaseClock stamps (hooks)."""
    features = json.loads(json_path.read_text()) if json_path.exists() and json_path.stat().st_size else []
    events = [json.loads(line) for line in clock_path.read_text().splitlines()] if clock_path.exists() else []
    # hooks from the stamps: before_scenario = scenario -> first match; after_scenario = last result -> next
    hooks: list[tuple[float, float]] = []
    scenario_at: float | None = None
    first_match: float | None = None
    last_result: float | None = None
    marks = [e for e in events if e["event"] in ("scenario", "match", "result", "eof", "close")]
    for event in marks + [{"event": "end", "t": ended}]:
        if event["event"] in ("scenario", "eof", "close", "end") and scenario_at is not None:
            setup = (first_match or event["t"]) - scenario_at
            teardown = event["t"] - (last_result or first_match or event["t"])
            hooks.append((setup, teardown))
            scenario_at = first_match = last_result = None
        if event["event"] == "scenario":
            scenario_at = event["t"]
        elif event["event"] == "match" and first_match is None:
            first_match = event["t"]
        elif event["event"] == "result":
            last_result = event["t"]
    scenarios: list[ScenarioTime] = []
    for feature in features:
        for element in feature.get("elements", []):
            if element.get("type") not in ("scenario", "scenario_outline"):
                continue
            timing = ScenarioTime(element.get("name", "?"), element.get("status", "?"))
            steps = element.get("steps", [])
            has_load = any(step_module(step) == "load" for step in steps)
            thens = 0
            for step in steps:
                is_then = step.get("step_type", "").lower() == "then"
                phase = step_phase(step, has_load, is_then and thens == 0)
                thens += is_then
                timing.phases[phase] += float(step.get("result", {}).get("duration", 0.0))
            if len(scenarios) < len(hooks):
                setup, teardown = hooks[len(scenarios)]
                timing.phases["setup"] += setup
                timing.phases["teardown"] += teardown
            scenarios.append(timing)
    first_scenario = next((e["t"] for e in events if e["event"] == "scenario"), ended)
    last_end = next((e["t"] for e in reversed(events) if e["event"] == "eof"), ended)
    return RunTime(backend, ended - launched, first_scenario - launched, ended - last_end, exit_code, scenarios)


def docker_answers() -> bool:
    """True when a Docker daemon answers ``docker info`` within 10 s."""
    if shutil.which("docker") is None:
        return False
    try:
        return (
            subprocess.run(
                ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, timeout=10
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def write_config(work: Path) -> None:
    """A behave.ini like the repository's, with every report written under ``work``."""
    userdata = read_ini_userdata(ROOT / "behave.ini")
    lines = [
        "[behave]",
        f"paths = {ROOT / 'features'}",
        "default_format = pretty",
        "format = pretty",
        "    allure_behave.formatter:AllureFormatter",
        "    json",
        "    bench.suite_time:PhaseClock",
        f"outfiles = {work / 'pretty.txt'}",
        f"    {work / 'allure-results'}",
        f"    {work / 'behave.json'}",
        f"    {work / 'clock.jsonl'}",
        "junit = true",
        f"junit_directory = {work / 'junit'}",
        "show_skipped = false",
        "logging_level = WARNING",
        "",
        "[behave.userdata]",
    ]
    lines += [f"{name} = {value}" for name, value in userdata.items()]
    (work / "behave.ini").write_text("\n".join(lines) + "\n")


def run_suite(backend: str, work: Path, paths: list[str]) -> RunTime:
    """One ``behave --tags=@chaos`` run on ``backend``, from a directory holding :func:`write_config`'s ini."""
    work.mkdir(parents=True)
    write_config(work)
    argv = [
        sys.executable,
        "-m",
        "behave",
        "--tags=@chaos",
        "-D",
        f"backend={backend}",
        "-D",
        f"work_root={WORK_ROOT}",
        *[str(ROOT / p) for p in paths],
    ]
    # the directory of environment.py and steps/ is found from the feature paths; bench.suite_time from ROOT
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    launched = time.monotonic()
    with open(work / "behave.log", "wb") as log:
        proc = subprocess.Popen(argv, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            code = proc.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # the suite turns SIGTERM into its cleanup
            try:
                code = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait(timeout=10)
            print(f"  {backend}: stopped after {RUN_TIMEOUT:g} s", flush=True)
        except BaseException:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            raise
    ended = time.monotonic()
    (work / "run.json").write_text(
        json.dumps({"backend": backend, "launched": launched, "ended": ended, "exit_code": code})
    )
    return report_of(work)


def report_of(work: Path) -> RunTime:
    """The :class:`RunTime` of a run directory that :func:`run_suite` made."""
    run = json.loads((work / "run.json").read_text())
    return breakdown(
        work / "behave.json", work / "clock.jsonl", run["launched"], run["ended"], run["backend"], run["exit_code"]
    )


def print_figures(runs: list[RunTime]) -> None:
    """The breakdown per scenario of each run, then the totals against QA_Recovery_Testing."""
    for run in runs:
        print()
        print(f"backend {run.backend}: per scenario, seconds")
        rows = [
            [s.name[:58], *(f"{s.phases[p]:.2f}" for p in PHASES), f"{s.total:.2f}", s.status] for s in run.scenarios
        ]
        totals = {p: sum(s.phases[p] for s in run.scenarios) for p in PHASES}
        rows.append(
            [
                "all scenarios",
                *(f"{totals[p]:.1f}" for p in PHASES),
                f"{sum(totals.values()):.1f}",
                f"{run.passed}/{len(run.scenarios)}",
            ]
        )
        print(table(["scenario", *PHASES, "total", "status"], rows))
    print()
    low, high, cases = QA_RECOVERY_TESTING
    rows = []
    for run in runs:
        n = len(run.scenarios) or 1
        rows.append(
            [
                run.backend,
                str(len(run.scenarios)),
                f"{run.wall:.1f}",
                f"{run.start:.1f}",
                f"{run.stop:.1f}",
                f"{run.wall / n:.1f}",
                f"{(low / cases) / (run.wall / n):.1f}-{(high / cases) / (run.wall / n):.1f}x",
                str(run.exit_code),
            ]
        )
    rows.append(
        [
            "QA_Recovery_Testing",
            str(cases),
            f"{low:.0f}-{high:.0f}",
            "-",
            "-",
            f"{low / cases:.0f}-{high / cases:.0f}",
            "1x",
            "-",
        ]
    )
    print(
        table(
            ["run", "scenarios", "wall s", "start s", "stop s", "s per scenario", "faster per scenario", "exit"], rows
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"only {QUICK_FEATURE}, process backend (under a minute)")
    parser.add_argument(
        "--backends",
        help="comma-separated: process, docker (default: process, and docker when a daemon answers; --quick: process)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the reports under /tmp/chaos-suite-bench")
    parser.add_argument("--from", dest="source", metavar="DIR", help="print the figures of runs kept with --keep")
    args = parser.parse_args()
    if args.source:
        print_figures([report_of(d) for d in sorted(Path(args.source).iterdir()) if (d / "run.json").exists()])
        return 0
    if args.backends:
        backends = args.backends.split(",")
    else:
        backends = ["process"] + (["docker"] if not args.quick and docker_answers() else [])
    paths = [QUICK_FEATURE] if args.quick else []
    print(
        f"{machine()}; behave --tags=@chaos {' '.join(paths) or '(all features)'} on: {', '.join(backends)}", flush=True
    )
    if not args.quick and "docker" not in backends:
        print("  (no Docker daemon answers: the docker backend is left out)", flush=True)
    root = Path(WORK_ROOT)
    root.mkdir(parents=True, exist_ok=True)
    work = root / f"bench-suite-time-{os.getpid()}"
    runs: list[RunTime] = []
    try:
        for backend in backends:
            run = run_suite(backend, work / backend, paths)
            runs.append(run)
            print(
                f"  {backend}: {run.wall:.1f} s, {run.passed}/{len(run.scenarios)} scenarios passed "
                f"(exit code {run.exit_code}); log {work / backend / 'behave.log'}",
                flush=True,
            )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print_figures(runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
