"""A catalog of bad input, each run as a user would run it (``behave ...`` in a subprocess).

For each: the exit code, one line naming what to fix, no traceback, nothing left running (no
process carries the run marker of the test's work root). Settings, stack-file and feature-file
mistakes are refused before anything starts, so those cases take about a second each; only the
last few start PostgreSQL. No case sends traffic off 127.0.0.1: the off-loopback targets are
literals, refused before any connection is tried.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.core.run_dirs import marked_processes
from tests.suite_runner import REPO, project_with

FEATURE = """@chaos
Feature: bad input
  Scenario: healthy
    Given the stack is healthy
"""

#: a stack file that starts from the reference one and changes what follows it
EXTENDS = f'extends = "{REPO / "stack" / "stack.toml"}"\n'


@dataclass
class Run:
    returncode: int
    output: str
    work_root: Path


@pytest.fixture
def work_root():
    root = Path("/tmp/chaos-suite-tests") / f"bad-input-{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True)
    root.parent.chmod(0o755)
    yield root
    subprocess.run(["rm", "-rf", str(root)], check=False)


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAOS_")}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra or {})
    return env


def behave(
    work_root: Path, *args: str, cwd: Path = REPO, env: dict[str, str] | None = None, timeout: float = 120
) -> Run:
    """``behave --tags=@chaos ARGS`` as a user runs it (the repository's behave.ini), in ``work_root``."""
    argv = [sys.executable, "-m", "behave", "--no-capture", "--no-junit", "-D", f"work_root={work_root}", *args]
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=_env(env))
    return Run(done.returncode, done.stdout + done.stderr, work_root)


def assert_refused(run: Run, fragment: str, code: int = 2, prefix: str = "chaos-suite: ") -> None:
    """Exit ``code``, exactly one line holding ``fragment`` (starting with ``prefix``), no traceback, and
    nothing of the run left running."""
    lines = [line for line in run.output.splitlines() if fragment in line]
    assert run.returncode == code, run.output[-3000:]
    assert len(lines) == 1, run.output[-3000:]
    assert lines[0].startswith(prefix), lines[0]
    assert "Traceback" not in run.output, run.output[-3000:]
    assert marked_processes(run.work_root) == []


def stack_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / f"stack-{uuid.uuid4().hex[:6]}.toml"
    path.write_text(text)
    return str(path)


SUITE_FEATURE = "features/recovery/api_restarts.feature"

# (id, -D settings and other arguments, environment, the fragment of the one line that names the fix)
SETTINGS_CASES = [
    ("unknown backend", ["-D", "backend=k8s"], {}, "backend='k8s' is not a backend; use one of: process, docker"),
    ("bad number", ["-D", "load_heavy=fast"], {}, "load_heavy='fast' (from -D load_heavy) is not a number"),
    (
        "bad whole number",
        ["-D", "recovery_min_successes=2.5"],
        {},
        "recovery_min_successes='2.5' (from -D recovery_min_successes) is not a whole number",
    ),
    ("bad boolean", ["-D", "keep_work_dir=maybe"], {}, "keep_work_dir='maybe' (from -D keep_work_dir) is not true or"),
    ("unknown setting", ["-D", "bakend=docker"], {}, "unknown setting 'bakend'; valid settings: allow_remote_targets"),
    ("negative rate", ["-D", "load_steady=-5"], {}, "load_steady=-5.0 must be greater than 0"),
    ("zero timeout", ["-D", "healthy_timeout=0"], {}, "healthy_timeout=0.0 must be greater than 0"),
    ("write fraction out of range", ["-D", "load_write_fraction=1.5"], {}, "load_write_fraction=1.5 must be between"),
    ("unknown docker network", ["-D", "docker_network=overlay"], {}, "docker_network='overlay' is not supported"),
    (
        "bad environment variable",
        [],
        {"CHAOS_LOAD_LIGHT": "lots"},
        "load_light='lots' (from environment CHAOS_LOAD_LIGHT) is not a number",
    ),
    (
        "work_root that cannot be made",
        ["-D", "work_root=/proc/x"],
        {},
        "work_root='/proc/x' cannot hold the run's directory (No such file or directory); set work_root to a",
    ),
    (
        "missing stack file",
        ["-D", "stack_file=/nonexistent/stack.toml"],
        {},
        "/nonexistent/stack.toml: no such stack file; set stack_file to an existing file",
    ),
    (
        "pg_bin pointing nowhere",
        ["-D", "pg_bin=/nonexistent/bin"],
        {},
        "pg_bin='/nonexistent/bin' holds no initdb/postgres; point it at a PostgreSQL bin directory",
    ),
    ("attached without URLs", ["-D", "backend=attached"], {}, "backend=attached needs attached_api_url"),
    (
        "attached database URL of another kind",
        [
            "-D",
            "backend=attached",
            "-D",
            "attached_api_url=http://127.0.0.1:9",
            "-D",
            "attached_database_url=mysql://u:p@127.0.0.1/db",
        ],
        {},
        "attached_database_url postgresql://USER:PASSWORD@HOST:PORT/DB",
    ),
    (
        "attached API off loopback",
        [
            "-D",
            "backend=attached",
            "-D",
            "attached_api_url=http://10.1.2.3:8000",
            "-D",
            "attached_database_url=postgresql://u:p@127.0.0.1:9/db",
        ],
        {},
        "refusing to inject faults into the API at 10.1.2.3: it is not on 127.0.0.1 and the suite did not start it",
    ),
    (
        "attached API on the unspecified address",
        [
            "-D",
            "backend=attached",
            "-D",
            "attached_api_url=http://0.0.0.0:8000",
            "-D",
            "attached_database_url=postgresql://u:p@127.0.0.1:9/db",
        ],
        {},
        "refusing to inject faults into the API at 0.0.0.0: 0.0.0.0 is the unspecified address",
    ),
    (
        "attached database on an IPv4-mapped private address",
        [
            "-D",
            "backend=attached",
            "-D",
            "attached_api_url=http://127.0.0.1:9",
            "-D",
            "attached_database_url=postgresql://u:p@[::ffff:10.0.0.1]:5432/db",
        ],
        {},
        "refusing to inject faults into PostgreSQL at ::ffff:10.0.0.1: it is not on 127.0.0.1",
    ),
]


@pytest.mark.parametrize("args, env, fragment", [c[1:] for c in SETTINGS_CASES], ids=[c[0] for c in SETTINGS_CASES])
def test_a_bad_setting_is_refused_at_start_in_one_line(work_root, args, env, fragment):
    assert_refused(behave(work_root, "--tags=@chaos", SUITE_FEATURE, *args, env=env), fragment)


STACK_FILE_CASES = [
    ("malformed TOML", '[api]\ncommand = ["x", "{port}"\n', "not valid TOML"),
    (
        "unknown field",
        '[api]\ncommand = ["x", "{port}"]\ncolour = "red"\n',
        "unknown [api] field(s) colour; valid: command, cwd",
    ),
    ("no command", '[api]\nhealth_path = "/health"\n', "[api] needs a command"),
    ("command without the port", '[api]\ncommand = ["{python}", "app.py"]\n', "[api] command must use {port}"),
    (
        "command naming a missing program",
        EXTENDS + '[api]\ncommand = ["no-such-service", "--port", "{port}"]\n',
        "command: the program 'no-such-service' is not found (neither on PATH nor as a file relative to",
    ),
    ("cwd that does not exist", EXTENDS + '[api]\ncwd = "no-such-folder"\n', "is not a directory; fix cwd"),
    # the stack file of several services (version 2)
    (
        "unknown uses target",
        EXTENDS + '[services.api]\nuses = ["postgres", "cache"]\n',
        "[services.api] uses names 'cache', which is not another service of this stack; services: postgres, api",
    ),
    (
        "dependency cycle",
        EXTENDS + '[services.worker]\ncommand = "w"\nready = { command = ["true"] }\n'
        'depends_on = ["api"]\n[services.api]\ndepends_on = ["worker"]\n',
        "depends_on: a dependency cycle api -> worker -> api; no service can start first",
    ),
    (
        "missing ready",
        EXTENDS + '[services.worker]\ncommand = "{python} worker.py"\n',
        "[services.worker] needs ready = { command = [...] }",
    ),
    (
        "placeholder of a service it does not use",
        EXTENDS + '[services.worker]\ncommand = "w {postgres.url}"\nready = { command = ["true"] }\n',
        "[services.worker] command has {postgres.url}, but 'postgres' is not in its uses; add uses = [\"postgres\"]",
    ),
    (
        "unknown service field",
        EXTENDS + '[services.api]\nhealthcheck = "/health"\n',
        "unknown [services.api] field(s) healthcheck; valid: kind, command, cwd",
    ),
    (
        "workload target that is not a service",
        EXTENDS + '[workload]\ntarget = "web"\n',
        "[workload] target = 'web' is not a service of this stack; services: postgres, api",
    ),
]


@pytest.mark.parametrize("text, fragment", [c[1:] for c in STACK_FILE_CASES], ids=[c[0] for c in STACK_FILE_CASES])
def test_a_broken_stack_file_is_refused_at_start_in_one_line(tmp_path, work_root, text, fragment):
    path = stack_file(tmp_path, text)
    assert_refused(behave(work_root, "--tags=@chaos", SUITE_FEATURE, "-D", f"stack_file={path}"), fragment)


FEATURE_CASES = [
    (
        "mistyped Scenario keyword",
        "@chaos\nFeature: x\n  Scenari: y\n    Given the stack is healthy\n",
        "x.feature:3: 'Scenari: y' is not a Gherkin keyword line, so it is read as description text; did you mean "
        "'Scenario:'?",
    ),
    (
        "unclosed doc string",
        FEATURE + '    And 1 users exist\n      """\n      text\n',
        'x.feature:6: the doc string opened here with """ is never closed',
    ),
    (
        "mistyped step keyword",
        "@chaos\nFeature: x\n  Scenario: y\n    Gven the stack is healthy\n",
        "scenario 'y' has no steps ('Gven the stack is healthy' is read as description: did you mean 'Given'?)",
    ),
    ("feature without a scenario", "@chaos\nFeature: x\n", "x.feature:2: feature 'x' has no scenario"),
    (
        "no scenario selected by the tags",
        FEATURE.replace("@chaos", "@slow"),
        "no scenario to run: the tags, names or lines given select none of the 1 scenario(s)",
    ),
    (
        "undefined step",
        FEATURE + "    And the stack is wobbly\n",
        "x.feature:5: And the stack is wobbly: no step definition matches it",
    ),
    (
        "negative duration",
        FEATURE + "    Then the API recovers within -1 seconds\n",
        "'-1 seconds' is not a duration; write it as 10 seconds, 1 second, 0.5 s, 250 ms or 2 minutes",
    ),
    (
        "duration without a digit before the point",
        FEATURE + "    Then the API recovers within .5 seconds\n",
        "'.5 seconds' is not a duration; write it as 10 seconds",
    ),
    ("unknown load level", FEATURE + "    And extreme load\n", "'extreme' is not a load level; use one of: light"),
    ("negative count", FEATURE + "    And -3 users exist\n", "'-3' is not a whole number"),
    (
        "rate that is not a number",
        FEATURE + "    And a steady load of 1.2.3 requests per second\n",
        "'1.2.3' is not a number",
    ),
    (
        "unknown service",
        FEATURE + "    When cache is killed\n",
        "x.feature:5: When cache is killed: unknown service 'cache'; this stack has: api, postgres (",
    ),
    (
        "two services with no link between them",
        FEATURE + "    When the network between api and api is cut for 2 s\n",
        "there is no network link between api and api (a link is a uses edge of the stack file); links: api and "
        "postgres",
    ),
    (
        "records noun of another stack",
        FEATURE + "    And 3 notes exist\n",
        "x.feature:5: And 3 notes exist: 'notes' is not what this stack's workload stores; say 'users'",
    ),
    (
        "table the workload does not have",
        FEATURE + "    When the orders table is locked for 2 seconds\n",
        "'orders' is not the workload's table; say 'users'",
    ),
]


@pytest.mark.parametrize("text, fragment", [c[1:] for c in FEATURE_CASES], ids=[c[0] for c in FEATURE_CASES])
def test_a_broken_feature_file_is_refused_before_the_stack_starts(tmp_path, work_root, text, fragment):
    project = project_with(tmp_path, "x.feature", text)
    assert_refused(behave(work_root, "--tags=@chaos", cwd=project), fragment)


def test_a_mistyped_keyword_after_a_scenario_is_refused_by_behaves_parser(tmp_path, work_root):
    project = project_with(tmp_path, "x.feature", FEATURE + "\n  Scenari: y\n    Given the stack is healthy\n")
    run = behave(work_root, "--tags=@chaos", cwd=project)
    # behave's own parser catches this one before any hook runs (exit 1): its second line names the line
    assert_refused(run, 'Parser failure in state=steps at line 6: "Scenari: y"', code=1, prefix="Parser failure")


def test_a_feature_path_that_does_not_exist_is_refused(work_root):
    run = behave(work_root, "--tags=@chaos", "features/no_such.feature")
    assert_refused(run, "features/no_such.feature", code=1, prefix="FileNotFoundError: ")


# -- the few cases that start PostgreSQL ------------------------------------------------------------


def test_the_documented_allure_command_adds_one_formatter_and_writes_where_it_is_told(tmp_path, work_root):
    project = project_with(tmp_path, "x.feature", FEATURE)
    results = tmp_path / "allure-dir"
    run = behave(
        work_root,
        "-f",
        "allure_behave.formatter:AllureFormatter",
        "-o",
        str(results),
        "--tags=@chaos",
        "features/x.feature",
        cwd=project,
    )
    assert run.returncode == 0, run.output[-3000:]
    assert "Traceback" not in run.output and "KeyError" not in run.output
    assert "1 scenario passed" in run.output
    assert len(list(results.glob("*-result.json"))) == 1
    assert (results / "environment.properties").is_file() and (results / "summary.json").is_file()
    assert marked_processes(work_root) == []


def test_the_default_output_is_printed_once_and_junit_keeps_only_this_run(tmp_path, work_root):
    project = project_with(tmp_path, "x.feature", FEATURE)
    stale = project / "reports" / "junit" / "TESTS-features.gone.xml"
    stale.parent.mkdir(parents=True)
    stale.write_text("<testsuite/>")
    argv = [sys.executable, "-m", "behave", "-D", f"work_root={work_root}", "--tags=@chaos"]
    done = subprocess.run(argv, cwd=project, capture_output=True, text=True, timeout=180, env=_env())
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert done.stdout.count("Scenario: healthy") == 1, done.stdout
    assert not stale.exists()
    assert len(list(stale.parent.glob("*.xml"))) == 1


def test_a_failing_before_scenario_ends_without_a_hook_error_of_the_suites_own(tmp_path, work_root):
    unhealthy = stack_file(tmp_path, EXTENDS + '[api]\nhealth_path = "/no-such-path"\n')
    project = project_with(tmp_path, "x.feature", FEATURE)
    run = behave(work_root, "--tags=@chaos", "-D", f"stack_file={unhealthy}", "-D", "healthy_timeout=1", cwd=project)
    assert run.returncode != 0
    assert "has no attribute 'chaos'" not in run.output
    assert "HOOK-ERROR in after_scenario" not in run.output, run.output[-3000:]
    assert marked_processes(work_root) == []


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_start_up_exits_128_plus_its_number_without_a_hook_error(tmp_path, work_root, sig, code):
    project = project_with(tmp_path, "x.feature", FEATURE)
    out = tmp_path / "behave.out"
    behave_run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "behave",
            "--no-capture",
            "--no-junit",
            "-f",
            "plain",
            "-D",
            f"work_root={work_root}",
            "--tags=@chaos",
        ],
        cwd=project,
        env=_env(),
        stdout=out.open("wb"),
        stderr=subprocess.STDOUT,
        # a shell's background job ignores SIGINT; a user's terminal does not
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 60
        while not list(work_root.glob("run-*")) and time.monotonic() < deadline:
            time.sleep(0.05)  # the run dir appears once before_all is starting the stack
        assert list(work_root.glob("run-*")), out.read_text()
        behave_run.send_signal(sig)
        assert behave_run.wait(timeout=60) == code, out.read_text()[-3000:]
    finally:
        if behave_run.poll() is None:
            behave_run.kill()
            behave_run.wait()
    text = out.read_text()
    assert "AttributeError" not in text and "Traceback" not in text, text[-3000:]
    assert marked_processes(work_root) == []


def test_the_workloads_own_nouns_and_table_are_the_steps_words_on_its_stack(tmp_path, work_root):
    notes = (
        "@chaos\nFeature: notes\n  Scenario: notes\n    Given the stack is healthy\n    And 3 notes exist\n"
        "    When the notes table is locked for 1 second\n    Then the 3 notes still exist\n"
        "    And exactly 3 notes are stored\n"
    )
    project = project_with(tmp_path, "notes.feature", notes)
    run = behave(
        work_root,
        "--tags=@chaos",
        "-D",
        f"stack_file={REPO / 'examples' / 'notes_service' / 'stack.toml'}",
        cwd=project,
    )
    assert run.returncode == 0, run.output[-3000:]
    assert "1 scenario passed" in run.output, run.output[-3000:]
