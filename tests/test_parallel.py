"""The parallel runner (scripts/parallel.py): the same verdicts as a serial run, one report, one exit code,
one line for bad input, and nothing left after a signal. Real runs on the process backend, kept short."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from behave.parser import parse_file
from behave.runner import Context
from suite_runner import BROKEN, REPO, BehaveRun, leftovers, project_with, run_behave

from scripts import parallel, parallel_gate
from support.core import run_dirs
from support.core.waiting import wait_until

ALLURE = "allure_behave.formatter:AllureFormatter"
FIRST_REQUEST = "The first request after a Postgres restart succeeds"
FIRST_REQUEST_TWICE = "Feature: restarts\n" + "".join(
    f"""
  Scenario: {FIRST_REQUEST} ({n})
    Given the stack is healthy
    And 3 users exist
    When postgres restarts
    Then the next request succeeds
"""
    for n in (1, 2)
)
FIRST_REQUEST_ALONE = f"""Feature: restarts alone
  @serial
  Scenario: {FIRST_REQUEST} (alone)
    Given the stack is healthy
    And 3 users exist
    When postgres restarts
    Then the next request succeeds
"""

TWO_LONG_FAULTS = """Feature: two long faults
  Scenario: Postgres frozen for a long time
    Given the stack is healthy
    When postgres is paused for 60 seconds

  Scenario: The users table locked for a long time
    Given the stack is healthy
    When the users table is locked for 60 seconds
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAOS_")}
    env["PYTHONPATH"] = str(REPO)
    return env


@pytest.fixture
def out(tmp_path):
    """A work root under /tmp (PostgreSQL's user must enter it) and the run's report folders."""
    root = Path("/tmp/chaos-suite-tests") / f"parallel-{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True)
    root.parent.chmod(0o755)
    yield root
    subprocess.run(["rm", "-rf", str(root)], check=False)


def _argv(out: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "scripts.parallel", "--logs", str(out / "logs"),
            "-f", ALLURE, "-o", str(out / "allure"), "--junit-directory", str(out / "junit"),
            "-D", f"work_root={out / 'work'}", "-D", "keep_work_dir=true", *args]  # fmt: skip


def run_parallel(out: Path, *args: str, cwd: Path = REPO, timeout: float = 600) -> BehaveRun:
    done = subprocess.run(_argv(out, *args), cwd=cwd, capture_output=True, text=True, timeout=timeout, env=_env())
    return BehaveRun(done.returncode, done.stdout + done.stderr, sorted((out / "work").glob("run-*")))


def _statuses(results: Path) -> dict[str, str]:
    return {row["name"]: row["status"] for row in json.loads((results / "summary.json").read_text())["rows"]}


# -- real runs --


def test_a_broken_variant_fails_the_same_scenario_in_parallel_as_in_series(tmp_path, out):
    """no_pre_ping (tests/broken_apis) fails the scenario guarding pre-ping with the same message on 2 stacks
    at once as in a serial run (the scenario twice, so that both stacks run it at the same time, each on a
    fresh stack as the serial run's is, and a third time @serial: after the first stack's share, once the
    other stack has exited)."""
    project = project_with(tmp_path, "restart.feature", FIRST_REQUEST_TWICE)
    (project / "features" / "restart_alone.feature").write_text(FIRST_REQUEST_ALONE)
    variant = ("-D", f"stack_file={BROKEN / 'no_pre_ping.toml'}")
    # in series as tests/test_broken_variants.py runs it: the suite's own scenario, on a stack of its own
    serial = run_behave(
        out / "serial", *variant, "-n", f"^{re.escape(FIRST_REQUEST)}$", "-o", "-", "-f", ALLURE, "-o",
        str(out / "serial-allure"),
    )  # fmt: skip
    par = run_parallel(out, "--processes", "2", *variant, cwd=project)
    assert serial.returncode == 1, serial.output[-3000:]
    assert par.returncode == 1, par.output[-3000:]
    assert "2 scenarios on 2 stacks at once, then 1 @serial alone on stack 1 when the others are done" in par.output
    assert _statuses(out / "serial-allure") == {FIRST_REQUEST: "failed"}, serial.output[-3000:]
    # the @serial one runs after another scenario on its stack: against this variant its verdict depends on
    # what the pool kept from that scenario's restart (one behave over all three fails the 1st and 3rd), so
    # only its place in time is checked here
    verdicts = {f"{FIRST_REQUEST} ({n})": "failed" for n in (1, 2)}
    alone_name = f"{FIRST_REQUEST} (alone)"
    statuses = _statuses(out / "allure")
    assert {k: v for k, v in statuses.items() if k != alone_name} == verdicts, par.output[-3000:]
    message = "Then the next request succeeds: the first request after the fault was answered 503, not 200"
    assert message in serial.output and par.output.count(message) >= 2, par.output[-3000:]
    # one merged report: each scenario's Allure result, JUnit of each feature (split across the stacks) in one file
    results = {r["name"]: r for r in (json.loads(p.read_text()) for p in (out / "allure").glob("*-result.json"))}
    assert {name: r["status"] for name, r in results.items()} == statuses
    junit = {p.name: p.read_text() for p in (out / "junit").glob("*.xml")}
    assert len(junit) == 2 and sum(text.count("<testcase") for text in junit.values()) == 3, junit.keys()
    assert any(text.count("<testcase") == 2 and 'failures="2"' in text for text in junit.values())
    assert len(par.run_dirs) == 2, "a stack of its own for each scenario running at once; the @serial one reuses one"
    # the @serial scenario started after the other stack had exited, and its time does not include the wait
    assert par.output.index("stack 2: 1 failed") < par.output.index("its @serial scenarios may start"), par.output
    alone = results[alone_name]
    assert alone["start"] > max(r["stop"] for name, r in results.items() if name != alone_name)
    assert leftovers(serial) == [] and leftovers(par) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_the_runner_stops_every_stack_and_leaves_nothing(tmp_path, out, sig):
    project = project_with(tmp_path, "long.feature", TWO_LONG_FAULTS)
    runner = subprocess.Popen(
        _argv(out, "--processes", "2"), cwd=project, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:

        def both_faults_open():
            assert runner.poll() is None, f"the runner exited with {runner.returncode}: {runner.stdout.read()}"
            journals = list((out / "work").glob("run-*/faults.json"))
            return len([j for j in journals if json.loads(j.read_text() or "{}").get("open_faults")]) == 2

        wait_until(both_faults_open, 90, "both stacks' faults injected", interval=0.2, retry_on=(ValueError, OSError))
        started = time.monotonic()
        runner.send_signal(sig)
        output, _ = runner.communicate(timeout=120)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    run = BehaveRun(runner.returncode, output.decode(errors="replace"), sorted((out / "work").glob("run-*")))
    assert run.returncode == 128 + sig, run.output[-3000:]
    assert time.monotonic() - started < 60, "the stacks stopped well before their 60 s faults ended"
    assert len(run.run_dirs) == 2
    assert leftovers(run) == [], run.output[-3000:]
    for journal in (d / "faults.json" for d in run.run_dirs):
        assert json.loads(journal.read_text())["open_faults"] == [], "every fault healed"
    assert "Chaos suite summary: 2 scenarios" in run.output


@pytest.mark.parametrize(
    "args, says",
    [
        (["--processes", "0", "--tags=@chaos"], "--processes 0: the number of stacks must be 1 or more"),
        (["--processes", "two"], "--processes two --timeout 3600: both must be numbers"),
        (["--tags=@no_such_tag"], "no scenario to run: the tags, names or lines given select none"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["-D", "no_such_setting=1"], "unknown setting 'no_such_setting'"),
        (["-o", "/tmp/x"], "more outfiles (3) than formatters (2): give each -o a -f before it"),
    ],
    ids=["processes-0", "processes-nan", "unknown-tag", "unknown-option", "unknown-setting", "outfiles"],
)
def test_bad_input_gets_one_line(out, args, says):
    run = run_parallel(out, *args, timeout=60)
    assert run.returncode == 2, run.output
    lines = run.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chaos-suite: ") and says in lines[0], run.output
    assert not (out / "work").exists() or not list((out / "work").glob("run-*")), "nothing started"


# -- the parts, without a stack --


def _scenario(n: int, serial: bool = False) -> parallel.Selected:
    return parallel.Selected(f"f.feature:{n}", "F", f"s{n}", frozenset({"chaos", "serial"} if serial else {"chaos"}))


def test_the_plan_balances_by_earlier_durations_and_keeps_serial_scenarios_apart():
    scenarios = [_scenario(n) for n in range(1, 7)] + [_scenario(7, serial=True)]
    took = {("F", "s1"): 9.0, ("F", "s2"): 2.0, ("F", "s3"): 2.0, ("F", "s4"): 4.0, ("F", "s5"): 4.0, ("F", "s6"): 1.0}
    shares, serial = parallel.plan(scenarios, 2, took)
    assert serial == [scenarios[6]]
    # each costs its duration + 1 s of hooks, longest first onto the least loaded:
    # s1 (10) | s4 (5), s5 (10); s2 (3) -> 13 | s3 (3) -> 13; s6 (2) -> 15 | 13
    assert [[s.name for s in share] for share in shares] == [["s3", "s4", "s5"], ["s1", "s2", "s6"]]
    assert all(share == sorted(share, key=scenarios.index) for share in shares), "file order within a share"
    loads = [sum(parallel.cost_s(s, took) for s in share) for share in shares]
    assert loads == sorted(loads), "the least loaded share first: it is the one that takes the @serial scenarios"
    shares, _ = parallel.plan(scenarios[:2], 3)
    assert len(shares) == 2, "no stack without a scenario"


def test_without_an_earlier_run_the_plan_balances_by_the_seconds_the_steps_hold():
    assert parallel.estimate_s(["Given the stack is healthy", "Then the API recovers within 10 seconds"]) == 2.0
    held = ["When postgres is paused for 60 seconds", "And the load runs for 1.5 seconds"]
    assert parallel.estimate_s(held) == 2.0 + 61.5
    long = parallel.Selected("f.feature:1", "F", "long", frozenset({"chaos"}), parallel.estimate_s(held))
    short = [parallel.Selected(f"f.feature:{n}", "F", f"s{n}", frozenset({"chaos"})) for n in range(2, 8)]
    shares, _ = parallel.plan([long, *short], 2)
    assert [[s.name for s in share] for share in shares] == [[s.name for s in short], ["long"]]
    took = {("F", "long"): 1.0}  # an earlier run's figure wins over the estimate
    shares, _ = parallel.plan([long, *short], 2, took)
    assert sorted(len(share) for share in shares) == [3, 4]


def _in(file: str, n: int, serial: bool = False) -> parallel.Selected:
    return parallel.Selected(f"{file}.feature:{n}", file, f"{file}{n}", frozenset({"serial"} if serial else ()))


def test_the_serial_scenarios_follow_a_share_as_features_of_their_own():
    """behave merges consecutive locations of one file into one feature, and the gate is before a feature:
    no @serial location may follow a location of its own file that is not @serial."""
    a1, a2, b1, b2 = _in("a", 1), _in("a", 2), _in("b", 1), _in("b", 2)
    sa, sb = _in("a", 9, serial=True), _in("b", 9, serial=True)
    assert parallel.host_order([a1, b1], [sa, sb]) == [a1, b1, sa, sb]
    assert parallel.host_order([a1, a2], [sa, sb]) == [a1, a2, sb, sa], "starts with the file the share ends without"
    assert parallel.host_order([a1, b1, b2], [sb]) == [b1, b2, a1, sb], "the share's locations of that file go first"
    assert parallel.host_order([b1, b2], [sb]) is None, "one file only: the @serial ones need a stack of their own"
    assert parallel.host_order([], [sa]) == [sa]


def test_the_exit_code_follows_a_serial_runs_rules():
    assert parallel.run_exit_code([0, 0]) == 0
    assert parallel.run_exit_code([0, 1]) == 1
    assert parallel.run_exit_code([1, 2]) == 2
    assert parallel.run_exit_code([0, -9]) == 2
    assert parallel.run_exit_code([1, 130], signal.SIGINT) == 130


def test_a_stacks_behave_writes_allure_and_junit_into_its_own_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # behave.ini's formats and outfiles count, as for the user
    stack = parallel.Stack("stack 1", [_scenario(3)], tmp_path / "s1", tmp_path / "s1.log")
    for args in ([], ["-f", "plain"], ["-f", "pretty", "-o", str(tmp_path / "p.txt"), "features"]):
        argv = parallel.child_argv(args, parallel.behave_config(args), stack)
        assert argv[:3] == [sys.executable, "-m", "behave"] and "features" not in argv[3:]
        child = parallel.behave_config(argv[3:])
        assert parallel.report_meta.results_dir(child.format, child.outfiles) == stack.results, argv
        assert child.junit_directory == str(stack.junit) and child.paths == ["f.feature:3"]


def test_junit_files_of_one_feature_split_across_stacks_are_merged(tmp_path):
    for n, (tests, failures) in enumerate([(2, 1), (1, 0)]):
        folder = tmp_path / f"s{n}"
        folder.mkdir()
        cases = "".join(f'<testcase name="c{n}{i}"/>' for i in range(tests))
        (folder / "TESTS-f.xml").write_text(
            f'<testsuite name="f" tests="{tests}" errors="0" failures="{failures}" skipped="0" time="1.5">'
            f"{cases}</testsuite>"
        )
    (merged,) = parallel.merge_junit([tmp_path / "s0", tmp_path / "s1"], tmp_path / "out")
    text = merged.read_text()
    assert text.count("<testcase") == 3 and 'tests="3"' in text and 'failures="1"' in text and 'time="3.0' in text


def test_a_run_directory_being_made_is_not_swept_as_a_leftover(tmp_path):
    young = tmp_path / "run-young"
    young.mkdir()  # no run.json yet: another run is between its mkdir and its record
    old = tmp_path / "run-old"
    old.mkdir()
    os.utime(old, (time.time() - 60, time.time() - 60))
    removed = run_dirs.clean_leftovers(tmp_path)
    assert removed.run_dirs == [old] and young.exists()


def test_the_heavy_load_scenarios_run_alone():
    """A scenario of the default run (``@chaos``) at the heavy load level (100 requests per second or more)
    shares the machine with no other: it carries @serial."""
    heavy = re.compile(r"\bheavy load\b|load of \d{3,} requests|\d{3,} concurrent users")
    missing = [
        f"{scenario.filename}:{scenario.line} {scenario.name}"
        for path in sorted((REPO / "features").rglob("*.feature"))
        for scenario in parse_file(str(path)).walk_scenarios()
        if "chaos" in scenario.effective_tags
        and any(heavy.search(step.name) for step in scenario.all_steps)
        and "serial" not in scenario.effective_tags
    ]
    assert not missing, missing


class _Feature:
    """What the gate reads of behave's feature: its scenarios' tags and whether they are selected."""

    def __init__(self, *tags: str) -> None:
        self.scenarios = [
            SimpleNamespace(effective_tags={"chaos", tag}, should_run=lambda config: True) for tag in tags
        ]

    def walk_scenarios(self):
        return self.scenarios


def test_the_gated_runner_holds_the_serial_features_until_the_gate_is_made(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    gate = tmp_path / "gate"
    monkeypatch.setenv(parallel_gate.GATE, str(gate))
    monkeypatch.setenv(parallel_gate.GATE_S, "60")
    runner = parallel_gate.GatedRunner(parallel.behave_config([]))
    assert runner.run_hook_with_capture("before_feature", _Feature("database")), "no @serial scenario: no wait"
    waiter = threading.Thread(target=runner.run_hook_with_capture, args=("before_feature", _Feature("serial")))
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive(), "waits while the gate is not made"
    gate.touch()
    waiter.join(30)
    assert not waiter.is_alive() and not runner.aborted
    # a gate that is never made stops the run at the deadline (the run's --timeout), as a stop does
    monkeypatch.setenv(parallel_gate.GATE, str(tmp_path / "never"))
    monkeypatch.setenv(parallel_gate.GATE_S, "0.2")
    runner = parallel_gate.GatedRunner(parallel.behave_config([]))
    runner.context = Context(runner)
    runner.run_hook_with_capture("before_feature", _Feature("serial"))
    assert runner.aborted


def test_the_first_scenarios_wait_until_every_stack_is_up(tmp_path, monkeypatch):
    """Each stack's runner says it is up before its first feature, and waits for the start gate."""
    monkeypatch.chdir(REPO)
    up, start = tmp_path / "up", tmp_path / "start"
    monkeypatch.setenv(parallel_gate.UP, str(up))
    monkeypatch.setenv(parallel_gate.START, str(start))
    runner = parallel_gate.GatedRunner(parallel.behave_config([]))
    waiter = threading.Thread(target=runner.run_hook_with_capture, args=("before_feature", _Feature("database")))
    waiter.start()
    wait_until(up.exists, 30, "the stack said it is up", interval=0.05)
    waiter.join(0.5)
    assert waiter.is_alive(), "waits while the start gate is not made"
    start.touch()
    waiter.join(30)
    assert not waiter.is_alive()
    assert runner.run_hook_with_capture("before_feature", _Feature("database")), "only before the first feature"
