"""The descriptor limit (features/resources/descriptors.feature): the new clients it judges, the reference API's
spare descriptor that answers them 503, the scenario on both backends and against a variant without the spare,
and what a suite killed while the limit holds leaves behind.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from docker_engine import require_docker
from suite_runner import BROKEN, REPO, leftovers, project_with, run_behave, start_behave

from support.checks.new_clients import check_new_clients_answered_503
from support.checks.verdict import CheckFailed
from support.core.ports import free_port
from support.core.waiting import wait_until
from support.faults.descriptors import DescriptorLimit, NewClient, NewClients
from support.stack.services import Address

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="other processes' limits need root")
FEATURE = "features/resources/descriptors.feature"


@dataclass
class _Service:
    name: str = "api"
    address: Address = Address("127.0.0.1", 1)


def _limit_with(clients: list[NewClient]) -> DescriptorLimit:
    fault = DescriptorLimit(_Service(), files=16).with_new_clients()  # type: ignore[arg-type]
    assert fault.new_clients is not None
    fault.new_clients.clients = clients
    fault.active_since = 100.0
    return fault


# -- the judgement of the new clients ------------------------------------------------------------------------


def test_new_clients_served_or_refused_with_503_pass_and_a_wait_or_another_5xx_fails():
    check_new_clients_answered_503([_limit_with([NewClient(100.1, 100.2, 503), NewClient(100.3, 101.5, 404)])])
    with pytest.raises(CheckFailed) as failed:
        check_new_clients_answered_503(
            [_limit_with([NewClient(100.5, 102.5, error="no answer within 2 s"), NewClient(101, 101.1, 500)])]
        )
    assert str(failed.value) == (
        "2 of 2 new clients not answered with 503 while the descriptor limit held: no answer within 2 s x1,"
        " status 500 x1; first: connected 0.500 s into the limit, no answer within 2 s after 2.0 s"
    )


def test_new_clients_that_were_all_served_say_the_limit_never_bit_and_none_at_all_says_how_to_get_some():
    with pytest.raises(CheckFailed, match="none of the 2 new clients was refused: each was served, so the desc"):
        check_new_clients_answered_503([_limit_with([NewClient(100.1, 100.2, 200), NewClient(100.3, 100.4, 404)])])
    with pytest.raises(CheckFailed, match="no new client ended while the descriptor limit held"):
        check_new_clients_answered_503([_limit_with([])])
    with pytest.raises(CheckFailed, match="no fault was injected in this scenario, so there is no new client"):
        check_new_clients_answered_503([])


def test_new_clients_record_a_refusal_and_a_wait_and_leave_out_those_still_waiting_at_the_stop():
    refusing = socket.create_server(("127.0.0.1", 0))
    silent = socket.create_server(("127.0.0.1", 0), backlog=64)  # never accepts: clients wait in its queue

    def refuse() -> None:
        while True:
            try:
                conn, _ = refusing.accept()
            except OSError:
                return
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    threading.Thread(target=refuse, daemon=True).start()
    try:
        answered = NewClients(Address("127.0.0.1", refusing.getsockname()[1]), interval=0.05, timeout=1.0)
        waiting = NewClients(Address("127.0.0.1", silent.getsockname()[1]), interval=0.05, timeout=0.3)
        answered.start()
        waiting.start()
        wait_until(lambda: len(answered.clients) >= 3 and len(waiting.clients) >= 3, 20, "new clients ending")
        answered.stop()
        waiting.stop()
        assert {c.status for c in answered.clients} == {503}
        assert {c.error for c in waiting.clients} == {"no answer within 0.3 s"}
        ended = len(waiting.clients)
        time.sleep(0.5)  # the clients still waiting at the stop end now: they are not judged
        assert len(waiting.clients) == ended and waiting.started > ended
        assert answered.summary().startswith(f"{len(answered.clients)} new clients judged (503 x")
    finally:
        refusing.close()
        silent.close()


# -- the reference API's spare descriptor, on a real process at a real limit -------------------------------


def _start_api(module: str, port: int, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": f"postgresql://app:pw@127.0.0.1:{free_port()}/app",  # nothing listens: no database
        "PYTHONPATH": f"{REPO / 'stack' / 'api'}:{BROKEN}",
    }
    argv = [sys.executable, "-m", "uvicorn", f"{module}:app", "--host", "127.0.0.1", "--port", str(port)]
    # the log to a file: asyncio logs each failed accept with its traceback, and a full pipe would stall the API
    return subprocess.Popen([*argv, "--loop", "asyncio"], env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"))


def _ask(port: int, timeout: float) -> bytes | str:
    """One request on a new connection: the answer's bytes, or what went wrong."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.sendall(b"GET /users/1 HTTP/1.1\r\nHost: api\r\n\r\n")
            return conn.recv(4096)
    except TimeoutError:
        return "timeout"
    except OSError as error:
        return f"error: {error}"


def _at_its_limit(pid: int) -> tuple[int, int]:
    """Lower ``pid``'s soft descriptor limit to the lowest number it did not hold all along (a few samples: a
    connect that fails and closes its socket frees its number), so a new descriptor fails with EMFILE; the
    limits it had."""
    held = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
    for _ in range(10):
        time.sleep(0.05)  # samples 50 ms apart, not a synchronisation
        held &= {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
    first_free = next(n for n in range(len(held) + 1) if n not in held)
    was = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (first_free, was[1]))
    return was


@pytest.mark.parametrize("module", ["users_api.main", "no_descriptor_reserve"])
def test_at_its_descriptor_limit_the_api_answers_new_clients_503_and_without_the_spare_they_wait(module, tmp_path):
    port = free_port()
    api = _start_api(module, port, tmp_path / "api.log")
    try:
        wait_until(lambda: isinstance(_ask(port, 5), bytes) and _ask(port, 5), 90, "the API answering")
        was = _at_its_limit(api.pid)
        answers = [_ask(port, 1.5) for _ in range(3)]
        if module == "users_api.main":
            for answer in answers:
                assert isinstance(answer, bytes), answers
                head, _, body = answer.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), answer
                assert b"retry-after: 1" in head and b"connection: close" in head
                assert json.loads(body) == {
                    "error": "server overloaded",
                    "detail": "out of file descriptors: no connection can be accepted now",
                }
        else:
            assert answers == ["timeout"] * 3
        resource.prlimit(api.pid, resource.RLIMIT_NOFILE, was)
        # served once descriptors are back (asyncio accepts again at most a second after its last EMFILE);
        # the database is down, so served means its 503
        wait_until(
            lambda: _ask(port, 5),
            10,
            "a new client served once descriptors are back",
            done=lambda answer: isinstance(answer, bytes) and b"database unavailable" in answer,
        )
        assert api.poll() is None
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(timeout=30)
    if module == "users_api.main":
        log = (tmp_path / "api.log").read_text()
        assert "new client(s) answered 503 since the last such line" in log, log[-2000:]


# -- the scenario, against the reference API and a variant without the spare -------------------------------


#: the new clients wait past their 2 s; or the load's requests did first (asyncio logs each failed accept with
#: its traceback, up to its backlog of 2048 times a loop turn, and the variant's loop stalls on it)
VARIANT_FAILS = (
    r"\d+ of \d+ new clients not answered with 503 while the descriptor limit held: no answer within 2 s x\d+"
    r"|\d+ failed requests? not answered with 503: \d+ with no answer \(timeout x\d+\)"
)


@needs_root
@pytest.mark.parametrize("backend", ["process", "docker"])
def test_the_descriptor_scenario_fails_against_a_variant_without_the_spare_descriptor(tmp_path, backend):
    """Against the reference it passes in the runs of features/resources/ (tests/test_resource_faults.py)."""
    if backend == "docker":
        require_docker()
    stack = BROKEN / "no_descriptor_reserve.toml"
    run = run_behave(tmp_path, "-D", f"backend={backend}", "-D", f"stack_file={stack}", FEATURE)
    assert run.returncode == 1 and "0 scenarios passed, 1 failed" in run.output, run.output[-4000:]
    assert re.search(VARIANT_FAILS, run.output), run.output[-4000:]
    assert "Traceback" not in run.output
    assert not leftovers(run)


# -- a suite killed while the limit holds: the limit dies with the processes, the next run starts clean ------

LONG_LIMIT = """Feature: a long descriptor limit
  Scenario: The API limited for a long time
    Given the stack is healthy
    And a steady load of 20 requests per second
    When api cannot open more than 16 files for 120 seconds while new clients connect
"""

HEALTHY = """Feature: after a killed run
  Scenario: The stack is healthy
    Given the stack is healthy
"""


def _api_pids(run_dir: Path) -> list[int]:
    """The processes marked with ``run_dir`` whose command line runs the users API."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if str(run_dir).encode() in environ and b"users_api.main:app" in cmdline:
            found.append(int(pid))
    return found


@needs_root
def test_a_killed_suite_leaves_no_descriptor_limit_behind(tmp_path):
    work_root = Path("/tmp/chaos-suite-tests") / f"descriptors-{uuid.uuid4().hex[:8]}"
    work_root.mkdir(parents=True)
    work_root.parent.chmod(0o755)
    behave = start_behave(project_with(tmp_path, "long.feature", LONG_LIMIT), work_root)

    def limited():
        if behave.poll() is not None:
            raise AssertionError(f"behave exited with {behave.returncode}: {(work_root / 'behave.out').read_text()}")
        for journal in work_root.glob("run-*/faults.json"):
            for fault in json.loads(journal.read_text() or "{}").get("open_faults", []):
                if "open files limited to 16" in json.dumps(fault):
                    pids = _api_pids(journal.parent)
                    if pids and all(resource.prlimit(p, resource.RLIMIT_NOFILE)[0] == 16 for p in pids):
                        return journal.parent, pids
        return None

    try:
        run_dir, pids = wait_until(
            limited, 120, "the descriptor limit being injected", interval=0.2, retry_on=(ValueError, OSError)
        )
    finally:
        os.killpg(behave.pid, signal.SIGKILL)
        behave.wait()
    # the limit lives in the API's processes only: the reaper kills them, and nothing of the fault is left
    wait_until(lambda: not _api_pids(run_dir), 60, "the reaper killing the killed run's API")
    second = start_behave(project_with(tmp_path / "next", "healthy.feature", HEALTHY), work_root)
    assert second.wait(timeout=300) == 0, (work_root / "behave.out").read_text()[-3000:]
    output = (work_root / "behave.out").read_text()
    assert "1 scenario passed" in output, output[-3000:]
    assert not any(pid in pids for pid in _api_pids(run_dir))
