"""The Docker backend on a real engine: containers, faults, data, labels, leftovers.

The engine tests are skipped, with the reason, only when no Docker daemon
answers (and fail instead when CHAOS_REQUIRE_DOCKER=1, as in CI). Everything
runs with host networking on 127.0.0.1; no bridge network is created.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg2
import pytest
import yaml
from docker_engine import docker_engine

from support.backends.docker.backend import start_docker_stack
from support.backends.docker.engine import docker_client
from support.backends.docker.images import IMAGE_SPECS, ImageSpec, context_tar, ensure_image, inputs_digest
from support.backends.docker.labels import (
    KEEP_LABEL,
    OWNER_PID_LABEL,
    RUN_LABEL,
    SERVICE_LABEL,
    Owner,
    remove_leftovers,
    run_labels,
)
from support.backends.docker.specs import api_spec, postgres_spec
from support.core.config import Settings
from support.core.waiting import WaitTimeout, wait_until
from support.stack.services import Service, ServiceError
from support.stack.stack_file import DEFAULT_STACK_FILE, load_stack_file

REPO = Path(__file__).resolve().parents[1]


# -- without an engine ---------------------------------------------------------


def test_unreachable_daemon_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(ServiceError) as caught:
        docker_client()
    message = str(caught.value)
    assert message.startswith("cannot reach the Docker daemon at unix:///nonexistent/docker.sock")
    assert "-D backend=process" in message and "\n" not in message


def test_behave_without_a_daemon_says_how_to_fix_it_without_a_traceback(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAOS_")}
    env.update(DOCKER_HOST="unix:///nonexistent/docker.sock", PYTHONPATH=str(REPO))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "behave",
            "-D",
            "backend=docker",
            "-D",
            f"work_root={tmp_path}",
            "--tags=@chaos",
            "-f",
            "plain",
            "--no-junit",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-2000:]
    assert "chaos-suite: cannot reach the Docker daemon at unix:///nonexistent/docker.sock" in output
    assert "Traceback" not in output
    assert list(tmp_path.glob("run-*")) == []


def test_build_context_digest_follows_content_not_times(tmp_path):
    (tmp_path / "docker").mkdir()
    (tmp_path / "app" / "__pycache__").mkdir(parents=True)
    dockerfile = tmp_path / "docker" / "x.Dockerfile"
    dockerfile.write_text("FROM base\nCOPY app /app\n")
    (tmp_path / "app" / "main.py").write_text("print(1)\n")
    (tmp_path / "app" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"junk")
    spec = ImageSpec("x", "docker/x.Dockerfile", ("app",))
    first = context_tar(spec, tmp_path)
    os.utime(tmp_path / "app" / "main.py", (1, 1))
    (tmp_path / "app" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"other junk")
    assert context_tar(spec, tmp_path) == first
    base = inputs_digest(first, "sha256:base1", {"BASE_IMAGE": "b"})
    assert inputs_digest(first, "sha256:base2", {"BASE_IMAGE": "b"}) != base
    (tmp_path / "app" / "main.py").write_text("print(2)\n")
    assert inputs_digest(context_tar(spec, tmp_path), "sha256:base1", {"BASE_IMAGE": "b"}) != base


REFERENCE = load_stack_file(DEFAULT_STACK_FILE)
VALUES = {
    "python": "python",
    "repo": "/suite",
    "stack_dir": "/suite/stack",
    "sqlalchemy_url": "postgresql+psycopg2://app:b@127.0.0.1:15432/users",
}
VALUES["postgres.sqlalchemy_url"] = VALUES["sqlalchemy_url"]  # the reference stack file names its postgres


def test_the_api_container_runs_the_stack_files_command_from_the_mounted_repository():
    api = api_spec("run-x", "img", run_labels("run-x"), 18000, None, REFERENCE.api, VALUES).create_kwargs()
    assert api["environment"]["DATABASE_URL"] == VALUES["sqlalchemy_url"]
    assert api["environment"]["PYTHONPATH"] == "/suite/stack/api"
    assert api["working_dir"] == "/suite/stack/api"
    assert api["volumes"][str(REPO)] == {"bind": "/suite", "mode": "ro"}


def test_host_network_specs_listen_on_loopback_ports():
    labels = run_labels("run-x")
    pg = postgres_spec("run-x", "img", labels, "vol", 15432, None, "a", "b").create_kwargs()
    api = api_spec("run-x", "img", labels, 18000, None, REFERENCE.api, VALUES)
    assert pg["network_mode"] == "host" and "ports" not in pg
    assert pg["command"][:5] == ["postgres", "-c", "listen_addresses=127.0.0.1", "-p", "15432"]
    assert api.create_kwargs()["command"][3:8] == ["users_api.main:app", "--host", "127.0.0.1", "--port", "18000"]
    assert pg["restart_policy"]["Name"] == api.create_kwargs()["restart_policy"]["Name"] == "unless-stopped"
    assert pg["labels"][SERVICE_LABEL] == "postgres" and pg["labels"][RUN_LABEL] == "run-x"


def test_bridge_specs_publish_on_loopback_only():
    labels = run_labels("run-x")
    pg = postgres_spec("run-x", "img", labels, "vol", 15432, "chaos-net", "a", "b").create_kwargs()
    api = api_spec("run-x", "img", labels, 18000, "chaos-net", REFERENCE.api, VALUES)
    assert pg["network"] == "chaos-net" and "network_mode" not in pg
    assert pg["ports"] == {"5432/tcp": ("127.0.0.1", 15432)}
    assert api.create_kwargs()["ports"] == {"8000/tcp": ("127.0.0.1", 18000)}


def test_compose_file_has_health_checks_and_loopback_ports():
    compose = yaml.safe_load((REPO / "stack" / "compose.yaml").read_text())
    for name in ("postgres", "api"):
        service = compose["services"][name]
        assert service["healthcheck"]["test"][0] == "CMD"
        assert all(port.startswith("127.0.0.1:") for port in service["ports"])
        assert (REPO / "stack" / service["build"]["dockerfile"]).is_file()
    assert compose["services"]["api"]["depends_on"]["postgres"]["condition"] == "service_healthy"


# -- on a real engine ------------------------------------------------------------


@pytest.fixture(scope="module")
def client():
    engine = docker_engine()
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def stack(client, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("docker") / f"run-test-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    run_dir.mkdir()
    running = start_docker_stack(Settings(backend="docker"), run_dir)
    yield running
    running.close()


@pytest.fixture
def healthy(stack):
    """The module's stack, running and with an empty users table; left running afterwards."""
    stack.ensure_running(30)
    _sql(stack.admin_dsn, "TRUNCATE users RESTART IDENTITY")
    yield stack
    stack.ensure_running(30)


def _containers(client, run_id: str) -> dict[str, object]:
    return {
        c.labels[SERVICE_LABEL]: c for c in client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_id}"})
    }


def _sql(dsn: str, query: str, *args) -> list[tuple]:
    with psycopg2.connect(dsn, connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute(query, args)
        return cur.fetchall() if cur.description else []


def _create_users(api_url: str, count: int) -> list[dict]:
    """``count`` users created through the API, each acknowledged with 201."""
    tag = uuid.uuid4().hex[:8]
    users = []
    with httpx.Client(base_url=api_url, timeout=5) as http:
        for i in range(count):
            response = http.post(
                "/users", json={"name": f"docker-{tag}-{i}", "email": f"docker-{tag}-{i}@example.test"}
            )
            assert response.status_code == 201, response.text
            users.append(response.json())
    return users


def _stored(dsn: str, users: list[dict]) -> set[str]:
    """The emails of ``users`` that PostgreSQL holds, read with SQL."""
    return {row[0] for row in _sql(dsn, "SELECT email FROM users WHERE email = ANY(%s)", [u["email"] for u in users])}


def _select_one(dsn: str) -> int:
    with psycopg2.connect(dsn, connect_timeout=1) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        return cur.fetchone()[0]


def test_stack_runs_labelled_containers_on_host_network(client, healthy):
    run_id = healthy.services["api"].spec.labels[RUN_LABEL]
    containers = _containers(client, run_id)
    assert sorted(containers) == ["api", "postgres"]
    for name, container in containers.items():
        assert isinstance(healthy.service(name), Service)
        assert container.attrs["HostConfig"]["NetworkMode"] == "host"
        assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
        assert container.labels[OWNER_PID_LABEL] == str(os.getpid())
    assert containers["postgres"].attrs["Config"]["User"] == "postgres"
    volumes = client.volumes.list(filters={"label": f"{RUN_LABEL}={run_id}"})
    assert [v.attrs["Labels"][KEEP_LABEL] for v in volumes] == ["false"]
    assert healthy.api_url.startswith("http://127.0.0.1:")
    assert httpx.get(f"{healthy.api_url}/health", timeout=5).json()["database"] == "reachable"
    assert _select_one(healthy.app_dsn) == 1  # the app role and database exist, with the run's password


def test_restart_modes_keep_the_data_and_the_port(healthy):
    postgres = healthy.service("postgres")
    users = _create_users(healthy.api_url, 3)
    address = postgres.address
    for mode in ("fast", "immediate"):
        postgres.restart(mode, timeout=30)
        assert postgres.address == address
        assert _stored(healthy.admin_dsn, users) == {u["email"] for u in users}
    with pytest.raises(ValueError, match="unknown restart mode 'sloppy'"):
        postgres.restart("sloppy")


def test_killed_postgres_is_restarted_by_the_engine_with_its_data(healthy):
    postgres = healthy.service("postgres")
    users = _create_users(healthy.api_url, 2)
    before = postgres.restarts
    postgres.kill()
    # Docker's own policy brings it back: the restart count is the engine's, not ours
    wait_until(lambda: postgres.restarts == before + 1, 20, "the engine restarting postgres")
    postgres.wait_ready(20)
    assert _stored(healthy.admin_dsn, users) == {u["email"] for u in users}


def test_killed_api_is_restarted_by_the_engine(healthy):
    api = healthy.service("api")
    before = api.restarts
    api.kill()
    wait_until(lambda: api.restarts == before + 1, 20, "the engine restarting the api")
    api.wait_ready(20)
    assert httpx.get(f"{healthy.api_url}/health", timeout=5).status_code == 200


def test_stopped_api_stays_down_until_started(healthy):
    api = healthy.service("api")
    api.stop(timeout=10)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{healthy.api_url}/health", timeout=2)
    # the policy must not bring back what was stopped on purpose: it would within ~0.1 s
    with pytest.raises(WaitTimeout):
        wait_until(lambda: api.status() != "exited", 1.0, "the api coming back after a stop")
    api.start(timeout=30)
    assert httpx.get(f"{healthy.api_url}/health", timeout=5).status_code == 200


def test_paused_postgres_answers_nothing_until_resumed(healthy):
    postgres = healthy.service("postgres")
    postgres.pause()
    assert postgres.status() == "paused"
    with pytest.raises(psycopg2.OperationalError):
        _select_one(healthy.admin_dsn)
    postgres.resume()
    postgres.resume()  # a second resume is a no-op
    assert _select_one(healthy.admin_dsn) == 1


def test_whole_stack_restart_keeps_the_data(healthy):
    users = _create_users(healthy.api_url, 4)
    healthy.restart_all(30)
    assert _sql(healthy.admin_dsn, "SELECT count(*) FROM users") == [(4,)]
    assert httpx.get(f"{healthy.api_url}/users/{users[0]['id']}", timeout=5).json()["email"] == users[0]["email"]


def test_logs_are_stamped_and_cut_at_since(healthy):
    api = healthy.service("api")
    httpx.get(f"{healthy.api_url}/health", timeout=5)
    since = time.time()
    httpx.get(f"{healthy.api_url}/users/999999", timeout=5)
    recent = api.logs(since)
    assert "/users/999999" in recent
    assert "/users/999999" not in api.logs(time.time() + 60)
    stamps = [float(line.split(" ", 1)[0]) for line in recent.splitlines()]
    assert stamps and min(stamps) >= since - 0.001


def test_images_are_reused_while_inputs_are_unchanged(client):
    first = ensure_image(client, IMAGE_SPECS["postgres"], "debian:bookworm-slim")
    again = ensure_image(client, IMAGE_SPECS["postgres"], "debian:bookworm-slim")
    assert not again.built and again.id == first.id and again.seconds < 5


def test_missing_base_image_says_how_to_get_it(client):
    with pytest.raises(ServiceError) as caught:
        ensure_image(client, IMAGE_SPECS["api"], "chaos-suite-test/no-such-base:none")
    assert "bash stack/docker/build-base-image.sh chaos-suite-test/no-such-base:none" in str(caught.value)


def test_leftovers_of_dead_owners_go_and_nothing_else(client, stack):
    dead = subprocess.Popen(["true"])
    dead.wait()
    dead_owner = Owner(Owner.current().host, dead.pid, "1")  # a start time no live process has
    assert dead_owner.alive() is False
    base = "debian:bookworm-slim"
    made = []
    try:
        foreign = client.containers.run(
            base, ["sleep", "300"], detach=True, network_mode="none", labels={"purpose": "not the suite's"}
        )
        made.append(foreign)
        orphan = client.containers.create(
            base,
            ["sleep", "300"],
            network_mode="none",
            labels={**run_labels("run-dead", dead_owner), SERVICE_LABEL: "api"},
        )
        made.append(orphan)
        alive = client.containers.create(
            base, ["sleep", "300"], network_mode="none", labels={**run_labels("run-alive"), SERVICE_LABEL: "api"}
        )
        made.append(alive)
        orphan_volume = client.volumes.create(
            "chaos-suite-test-dead-pgdata", labels={**run_labels("run-dead", dead_owner), KEEP_LABEL: "false"}
        )
        kept_volume = client.volumes.create(
            "chaos-suite-test-kept-pgdata", labels={**run_labels("run-dead", dead_owner), KEEP_LABEL: "true"}
        )
        made += [orphan_volume, kept_volume]

        removed = remove_leftovers(client)

        assert orphan.name in removed.containers and orphan_volume.name in removed.volumes
        assert foreign.name not in removed.containers and alive.name not in removed.containers
        assert kept_volume.name not in removed.volumes and removed.failed == {}
        remaining = {c.id for c in client.containers.list(all=True)}
        assert foreign.id in remaining and alive.id in remaining and orphan.id not in remaining
        foreign.reload()
        assert foreign.status == "running"
        assert {v.name for v in client.volumes.list()} >= {kept_volume.name}
        assert sorted(_containers(client, stack.services["api"].spec.labels[RUN_LABEL])) == ["api", "postgres"]
    finally:
        for thing in made:
            try:
                thing.remove(force=True)
            except Exception:  # noqa: BLE001 - removed by the test itself
                pass


_KILLED_RUN = """
import sys, time
from pathlib import Path
from support.core.config import Settings
from support.backends.docker.backend import start_docker_stack
stack = start_docker_stack(Settings(backend="docker"), Path(sys.argv[1]))
print(stack.services["api"].spec.labels["chaos-suite.run"], flush=True)
time.sleep(600)
"""


def test_a_run_killed_with_sigkill_is_cleaned_up_by_the_next(client, tmp_path):
    run_dir = tmp_path / f"run-killed-{uuid.uuid4().hex[:8]}"
    run_dir.mkdir()
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_RUN, str(run_dir)],
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
    assert run_id == run_dir.name
    assert sorted(_containers(client, run_id)) == ["api", "postgres"]  # a SIGKILL cleans up nothing by itself

    removed = remove_leftovers(client)

    assert {f"chaos-suite-{run_id}-api", f"chaos-suite-{run_id}-postgres"} <= set(removed.containers)
    assert f"chaos-suite-{run_id}-pgdata" in removed.volumes
    assert _containers(client, run_id) == {}


def test_close_removes_the_containers_and_the_volume(client, stack):
    run_id = stack.services["api"].spec.labels[RUN_LABEL]
    stack.close()
    stack.close()  # idempotent
    assert _containers(client, run_id) == {}
    assert client.volumes.list(filters={"label": f"{RUN_LABEL}={run_id}"}) == []


def test_a_start_that_fails_removes_what_it_made(client, tmp_path, monkeypatch):
    from support.backends.docker import backend

    made = {}
    real_link = backend.start_link

    def start_link(*args, **kwargs):
        made["link"] = real_link(*args, **kwargs)
        return made["link"]

    def never_ready(self, timeout=30.0):
        raise ServiceError("api becoming ready did not happen within 0 s")

    monkeypatch.setattr(backend, "start_link", start_link)
    monkeypatch.setattr(backend.ApiContainer, "start", never_ready)
    run_dir = tmp_path / f"run-failed-{uuid.uuid4().hex[:8]}"
    run_dir.mkdir()
    with pytest.raises(ServiceError, match="api becoming ready"):
        start_docker_stack(Settings(backend="docker"), run_dir)
    assert _containers(client, run_dir.name) == {}  # PostgreSQL had started: its container is gone too
    assert client.volumes.list(filters={"label": f"{RUN_LABEL}={run_dir.name}"}) == []
    assert not made["link"].server.running
