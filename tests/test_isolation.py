"""Isolation against a misbehaving service: a wedged API costs one restart, not the rest of the run;
an impostor on a service's port is never taken for the service.

The variant tests/broken_apis/wedges_after_db_error.py keeps its port but never
answers again after its first 503. The scenarios after the one that wedges it
must still get verdicts of their own, the run must take no longer than the
wedge costs once, and two scenarios must get the same verdicts in either order.
"""

from __future__ import annotations

import http.server
import re
import subprocess
import sys
import threading
import time

import pytest
from suite_runner import BROKEN, REPO, leftovers, project_with, run_behave

from support.backends.process import backend as process_backend
from support.core.config import Settings
from support.core.ports import LOOPBACK, free_port, port_is_free
from support.core.waiting import wait_until
from support.run.isolation import Isolation, RunStopped, StackNotReady
from support.stack.readiness import ImpostorListening, check_listener
from support.stack.services import ServiceError
from support.stack.stack import Stack
from support.stack.stack_file import stack_definition

WEDGE = """
  Scenario: A database outage wedges the API
    Given the stack is healthy
    And a steady load of 20 requests per second
    When postgres is down for 2 seconds
    Then the health endpoint reports healthy within 5 seconds
"""
WEDGE_BOUND = 5.0  # seconds: the wedging scenario's own Then waits this long before it fails
LATER = """
  Scenario: Users are kept after the wedge {n}
    Given the stack is healthy
    And 3 users exist
    Then the 3 users still exist
"""
PROBE = Settings().ready_probe_timeout
LOAD_TIMEOUT = Settings().load_request_timeout  # the wedging scenario's hung requests are given up after this
#: healthy_timeout and start_timeout of these runs, seconds: a later scenario that waited either out (as every
#: scenario after a wedge did before isolation) would add this much
LONG = 120


def _feature(*scenarios: str) -> str:
    return "Feature: isolation\n" + "".join(scenarios)


def _run(tmp_path, name: str, stack: str, feature: str):
    project = project_with(tmp_path / name, "isolation.feature", feature)
    started = time.monotonic()
    run = run_behave(
        tmp_path / name / "work",
        "-D",
        f"stack_file={stack}",
        "-D",
        f"healthy_timeout={LONG}",
        "-D",
        f"start_timeout={LONG}",
        cwd=project,
    )
    return run, time.monotonic() - started


def _failing(output: str) -> set[str]:
    """The names behave lists under "Failing scenarios:"."""
    block = output.partition("Failing scenarios:")[2].split("\n\n", 1)[0]
    return {m.group(1).strip() for m in re.finditer(r"^\s+\S+\.feature:\d+\s+(.+)$", block, re.M)}


def test_a_wedged_api_is_restarted_once_and_the_next_scenarios_get_their_own_verdicts(tmp_path):
    feature = _feature(WEDGE, *(LATER.format(n=n) for n in (1, 2, 3)))
    # side by side: the same scenarios against the reference API, which does not wedge
    reference, reference_s = _run(tmp_path, "reference", str(REPO / "stack" / "stack.toml"), feature)
    wedged, wedged_s = _run(tmp_path, "wedged", str(BROKEN / "wedges_after_db_error.toml"), feature)
    assert reference.returncode == 0, reference.output[-4000:]
    assert wedged.returncode != 0, wedged.output[-4000:]
    assert "\n3 scenarios passed, 1 failed" in wedged.output, wedged.output[-4000:]
    assert _failing(wedged.output) == {"A database outage wedges the API"}, wedged.output[-4000:]
    restarts = re.findall(r"chaos-suite: before '([^']+)': api was not ready within .*; restarted it", wedged.output)
    assert restarts == ["Users are kept after the wedge 1"], wedged.output[-4000:]
    # the wedge costs once: its own Then bound and its load's hung requests (5 + 5 s), its evidence, then one
    # probe (3 s), one stop (SIGKILL after 1 s) and one start: ≈ 20-25 s here, on a shared 2-core machine. Any
    # later scenario that waited out healthy_timeout or start_timeout would add LONG on its own.
    assert WEDGE_BOUND + LOAD_TIMEOUT + PROBE + 1 < LONG / 2
    assert wedged_s - reference_s < LONG / 2, (wedged_s, reference_s, wedged.output[-3000:])
    assert leftovers(wedged) == [] and leftovers(reference) == []


def test_verdicts_do_not_depend_on_the_order_of_the_scenarios(tmp_path):
    later = LATER.format(n=1)
    first, _ = _run(tmp_path, "wedge-first", str(BROKEN / "wedges_after_db_error.toml"), _feature(WEDGE, later))
    second, _ = _run(tmp_path, "wedge-second", str(BROKEN / "wedges_after_db_error.toml"), _feature(later, WEDGE))
    for run in (first, second):
        assert "\n1 scenario passed, 1 failed" in run.output, run.output[-4000:]
        assert _failing(run.output) == {"A database outage wedges the API"}, run.output[-4000:]
        assert leftovers(run) == []


# -- readiness that an impostor on the port cannot fool ------------------------------------------


@pytest.fixture
def impostor():
    """An HTTP server that answers every path (404 on /health) on a free port: not the service."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", LOOPBACK, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: not port_is_free(port), 10, "the impostor listening")
        yield port, server
    finally:
        server.kill()
        server.wait()


def test_only_the_started_process_tree_counts_as_the_listener(impostor):
    port, server = impostor
    check_listener(port, server.pid, "impostor")  # its own socket: no error
    service = subprocess.Popen(["sleep", "60"])  # a process that holds no socket, as a service that could not bind
    try:
        with pytest.raises(ImpostorListening, match=f"another process listens on api's port {port}"):
            check_listener(port, service.pid, "api")
    finally:
        service.kill()
        service.wait()
    with pytest.raises(ImpostorListening, match="api is not running"):
        check_listener(port, None, "api")
    check_listener(free_port(), None, "api")  # nothing listens: the domain check fails by itself


def test_an_api_whose_port_an_impostor_holds_is_never_ready(impostor, tmp_path, monkeypatch):
    port, _ = impostor
    monkeypatch.setattr(process_backend, "free_port", lambda: port)
    definition = stack_definition(Settings())
    values = process_backend.connection_values(LOOPBACK, free_port(), "users", "app", "unused")
    values["stack_dir"] = str(definition.path.parent)
    api = process_backend.ApiProcess(definition.api, values, tmp_path)
    try:
        # the impostor answers GET /health at once; the API cannot bind and restarts in a loop
        with pytest.raises(ServiceError, match=f"ImpostorListening: another process listens on api's port {port}"):
            api.start(3.0)
    finally:
        api.close()


# -- the before-scenario routine itself, with services that misbehave on cue ----------------------


class _FakeService:
    """A service whose readiness is scripted: ``hung`` until restarted, or ``broken`` for good."""

    def __init__(self, name: str, hung: bool = False, broken: bool = False) -> None:
        self.name, self.hung, self.broken = name, hung, broken
        self.stops = 0

    def resume(self) -> None:
        pass

    def start(self, timeout: float = 30.0) -> None:
        if self.hung or self.broken:
            raise ServiceError(f"{self.name} becoming ready did not happen within {timeout:g} s")

    def stop(self, timeout: float = 10.0) -> None:
        self.stops += 1
        self.hung = False

    def logs(self, since: float | None = None) -> str:
        return "1764620000.000 starting\n1764620001.000 config error: FOO not set\n"


@pytest.fixture
def healthy_url():
    """A health endpoint that says 200 with the database reachable."""

    class Healthy(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b'{"status": "ok", "database": "reachable"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Healthy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://{LOOPBACK}:{server.server_address[1]}"
    server.shutdown()


def _isolation(url: str, api: _FakeService, **settings) -> Isolation:
    stack = Stack(
        backend="process",
        services={"postgres": _FakeService("postgres"), "api": api},
        api_url=url,
        admin_dsn="",
        app_dsn="",
    )
    return Isolation(stack, Settings(ready_probe_timeout=0.2, healthy_timeout=0.5, **settings))


def test_a_hung_service_is_restarted_and_the_restart_noted(healthy_url, capsys):
    api = _FakeService("api", hung=True)
    notes = _isolation(healthy_url, api).prepare("next")
    assert api.stops == 1
    assert list(notes) == ["api restarted"] and "restarted it" in notes["api restarted"]
    assert "chaos-suite: before 'next': api was not ready within 0.2 s" in capsys.readouterr().err


def test_a_stack_that_cannot_be_made_ready_fails_with_its_log_and_then_stops_the_run(healthy_url, capsys):
    isolation = _isolation(healthy_url, _FakeService("api", broken=True), not_ready_limit=2)
    said = r"(?s)api is not ready even after a restart: .*\n +config error: FOO not set"  # the service's own words
    with pytest.raises(StackNotReady, match=said):
        isolation.prepare("first")
    with pytest.raises(RunStopped, match="stopping the run: api could not be made ready before 2 scenarios in a row"):
        isolation.prepare("second")
    assert "chaos-suite: stopping the run: api could not" in capsys.readouterr().err


def test_a_ready_scenario_resets_the_count_of_not_ready_ones_in_a_row(healthy_url):
    api = _FakeService("api", broken=True)
    isolation = _isolation(healthy_url, api, not_ready_limit=2)
    with pytest.raises(StackNotReady):
        isolation.prepare("first")
    api.broken = False
    assert isolation.prepare("second") == {}
    api.broken = True
    with pytest.raises(StackNotReady):  # one in a row again, not two
        isolation.prepare("third")


def test_restart_api_isolation_restarts_the_api_before_every_scenario_but_the_first(healthy_url):
    api = _FakeService("api")
    api.restart = lambda mode="fast", timeout=30.0: setattr(api, "stops", api.stops + 1)
    isolation = _isolation(healthy_url, api, isolation="restart-api")
    for name in ("first", "second", "third"):
        isolation.prepare(name)
    assert api.stops == 2
