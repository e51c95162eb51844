"""The process backend's PostgreSQL, for real: a private cluster on a free loopback port."""

import secrets
import shutil
import signal
import threading
import time
from pathlib import Path

import psycopg2
import pytest

from support.backends.process.pg_binaries import PgNotFound, find_pg_binaries, run_as_for
from support.backends.process.postgres import PostgresProcess
from support.core.config import Settings
from support.core.waiting import wait_until
from support.stack.services import ServiceError


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    settings = Settings()
    run_as = run_as_for(settings.pg_user)
    bins = find_pg_binaries("", run_as, settings.work_root_path / "cache")
    run_dir = settings.work_root_path / f"test-{secrets.token_hex(4)}"
    run_dir.mkdir(parents=True)
    run_dir.chmod(0o755)
    service = PostgresProcess(bins, run_as, run_dir, secrets.token_urlsafe(12))
    service.initdb()
    service.start(30)
    yield service
    service.close()
    assert service.pid is None
    shutil.rmtree(run_dir)


def select_one(service):
    with psycopg2.connect(service.dsn(), connect_timeout=2) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        return cur.fetchone()[0]


def test_listens_on_loopback_only(postgres):
    assert postgres.address.host == "127.0.0.1"
    assert select_one(postgres) == 1


@pytest.mark.parametrize("mode", ["fast", "immediate", "smart"])
def test_restart_modes_keep_the_port_and_come_back_ready(postgres, mode):
    port, pid = postgres.address.port, postgres.pid
    postgres.restart(mode, timeout=20)
    assert postgres.address.port == port and postgres.pid != pid
    assert select_one(postgres) == 1


def test_kill_brings_it_back_by_the_restart_policy(postgres):
    pid = postgres.pid
    started = time.monotonic()
    postgres.kill(signal.SIGKILL)
    postgres.wait_ready(15)
    assert postgres.pid != pid
    assert time.monotonic() - started < 5


def test_stop_keeps_it_down_until_started(postgres):
    postgres.stop(10)
    with pytest.raises(psycopg2.OperationalError):
        select_one(postgres)
    postgres.start(20)
    assert select_one(postgres) == 1


def test_paused_server_does_not_answer_until_resumed(postgres):
    postgres.pause()
    try:
        with pytest.raises(psycopg2.OperationalError):
            psycopg2.connect(postgres.dsn(), connect_timeout=2)
    finally:
        postgres.resume()
    postgres.wait_ready(10)


def test_pause_freezes_existing_connections_too(postgres):
    # backends run in sessions of their own: a process-group SIGSTOP would miss them
    conn = psycopg2.connect(postgres.dsn(), connect_timeout=2)
    answers = []
    postgres.pause()
    try:
        worker = threading.Thread(target=lambda: answers.append(select_on(conn)))
        worker.start()
        worker.join(1.0)
        assert worker.is_alive() and answers == []
    finally:
        postgres.resume()
    worker.join(5)
    assert answers == [1]
    conn.close()


def select_on(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        return cur.fetchone()[0]


def test_kill_takes_the_backends_with_it(postgres):
    conn = psycopg2.connect(postgres.dsn(), connect_timeout=2)
    backend = conn.get_backend_pid()
    postgres.kill(signal.SIGKILL)
    postgres.wait_ready(15)
    wait_until(lambda: not alive(backend), 2, "the old backend's exit")
    conn.close()


def alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_logs_can_be_cut_at_a_wall_clock_moment(postgres):
    moment = time.time()
    postgres.restart("fast", 20)
    recent = postgres.logs(since=moment)
    assert "database system is ready to accept connections" in recent
    assert len(recent) < len(postgres.logs())


def test_wait_ready_failure_names_the_service_and_its_log(postgres):
    postgres.stop(10)
    try:
        with pytest.raises(ServiceError, match=r"postgres becoming ready did not happen within 0.3 s.*postgres.log"):
            postgres.wait_ready(0.3)
    finally:
        postgres.start(20)


def test_a_bad_pg_bin_setting_says_how_to_fix_it(tmp_path):
    with pytest.raises(PgNotFound, match="pg_bin=.* holds no initdb/postgres"):
        find_pg_binaries(str(tmp_path), run_as_for("nobody"), tmp_path)


def test_a_run_dir_postgres_cannot_reach_is_refused_in_one_line(tmp_path):
    settings = Settings()
    run_as = run_as_for(settings.pg_user)
    if run_as.uid is None:
        pytest.skip("only meaningful when PostgreSQL runs as another user")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    service = PostgresProcess(find_pg_binaries("", run_as, settings.work_root_path / "cache"), run_as, private, "pw")
    with pytest.raises(ServiceError, match="cannot enter .*set work_root"):
        service.initdb()


def test_the_pgserver_binaries_run_a_cluster_even_from_a_private_directory():
    """The fallback for machines with no PostgreSQL: the binaries that `pip install pgserver` ships."""
    import importlib.util

    spec = importlib.util.find_spec("pgserver")
    if spec is None:
        pytest.skip("pgserver is not installed")
    settings = Settings()
    run_as = run_as_for(settings.pg_user)
    bins = find_pg_binaries(
        str(Path(spec.origin).parent / "pginstall" / "bin"), run_as, settings.work_root_path / "cache"
    )
    run_dir = settings.work_root_path / f"test-{secrets.token_hex(4)}"
    run_dir.mkdir(parents=True)
    run_dir.chmod(0o755)
    service = PostgresProcess(bins, run_as, run_dir, "pw")
    try:
        service.initdb()
        service.start(30)
        assert select_one(service) == 1
    finally:
        service.close()
        shutil.rmtree(run_dir)


# -- stacks of several services on the process backend ----------------------------------------------

SEVERAL = """extends = "{reference}"

[services.side]
command = ["{{python}}", "-m", "http.server", "--bind", "{{host}}", "{{port}}"]
ready = {{ http = "/" }}

[services.worker]
command = ["{{python}}", "-c", "import time; time.sleep(600)"]
uses = ["side", "postgres"]
env = {{ SIDE = "{{side.host}}:{{side.port}}", DB = "{{postgres.url}}" }}
before_start = [["{{python}}", "-c", "{before}"]]
ready = {{ sql = "SELECT count(*) FROM users" }}
"""


def _several(tmp_path, before):
    from support.stack.stack_file import DEFAULT_STACK_FILE

    path = tmp_path / "several.toml"
    path.write_text(SEVERAL.format(reference=DEFAULT_STACK_FILE, before=before))
    settings = Settings(work_root="/tmp/chaos-suite-tests", stack_file=str(path))
    return settings, settings.work_root_path / f"test-{secrets.token_hex(4)}"


def test_a_stack_of_several_services_starts_in_order_with_a_link_per_use(tmp_path):
    from support.backends.process.backend import start_process_stack

    settings, run_dir = _several(tmp_path, "import os; print(os.environ['SIDE'])")
    stack = start_process_stack(settings, run_dir)
    try:
        assert stack.start_order == ("postgres", "api", "side", "worker")
        assert set(stack.links) == {("api", "postgres"), ("worker", "side"), ("worker", "postgres")}
        side_link = stack.link("side", "worker")
        assert side_link.upstream == stack.service("side").address
        assert side_link.address != stack.service("side").address  # the worker goes through the proxy
        for name in ("side", "worker"):
            service = stack.service(name)
            service.restart(timeout=20)
            service.wait_ready(5)
        assert stack.target == "api" and select_one_dsn(stack.admin_dsn) == 1
    finally:
        stack.close()
        shutil.rmtree(run_dir, ignore_errors=True)
    assert all(service.pid is None for service in stack.services.values())


def test_a_failing_before_start_stops_the_start_with_its_last_lines(tmp_path):
    from support.backends.process.backend import start_process_stack

    settings, run_dir = _several(
        tmp_path, "import sys; print('step 1 ok'); print('migration 7: no table'); sys.exit(3)"
    )
    try:
        with pytest.raises(ServiceError) as error:
            start_process_stack(settings, run_dir)
        message = str(error.value)
        assert message.startswith("worker: before_start ") and "exited 3" in message
        assert "its last lines: step 1 ok | migration 7: no table" in message and "\n" not in message
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def select_one_dsn(dsn):
    with psycopg2.connect(dsn, connect_timeout=2) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        return cur.fetchone()[0]
