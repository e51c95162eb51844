import pytest

from support.stack.service_tables import StackFileError
from support.stack.stack_file import DEFAULT_STACK_FILE, load_stack_file
from support.stack.workload import Workload


def write(tmp_path, text, name="stack.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_reference_stack_file_describes_the_reference_api():
    definition = load_stack_file(DEFAULT_STACK_FILE)
    assert definition.api.health_path == "/health"
    assert definition.workload == Workload()
    argv = definition.api.argv({"python": "py", "host": "127.0.0.1", "port": "8000"})
    assert argv[:4] == ["py", "-m", "uvicorn", "users_api.main:app"] and "8000" in argv


def test_extends_overrides_key_by_key_and_keeps_inherited_paths(tmp_path):
    path = write(tmp_path, f'extends = "{DEFAULT_STACK_FILE}"\n[api]\ncommand = "x --port {{port}}"\n')
    definition = load_stack_file(path)
    assert definition.api.command == ("x", "--port", "{port}")
    assert definition.api.cwd == DEFAULT_STACK_FILE.parent / "api"
    assert definition.workload.read_path == "/users/{id}"


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[api]\n", "[api] needs a command"),
        ('[api]\ncommand = "serve"\n', "must use {port}"),
        ('[api]\ncommand = "s {port}"\nhealth_path = "health"\n', "must start with /"),
        ('[api]\ncommand = "s {port}"\nstop_signal = "SIGFOO"\n', "is not a signal name"),
        ('[api]\ncommand = "s {port}"\n[workload]\nread_path = "/things"\n', "must contain {id}"),
        ('[api]\ncommand = "s {port}"\n[workload]\ncompare = ["age"]\n', "compare names 'age'"),
        ('[api]\ncommand = "s {port}"\n[workload]\ncolour = "red"\n', "unknown workload field(s) colour"),
        ("[apii]\n", "unknown section(s) apii"),
        ('[api]\ncommand = "s {port}"\n[api.docker]\nfiles = "x"\n', "[api.docker] takes image"),
        ('[api]\ncommand = "s {port}"\n[api.docker]\nimage = "x"\nbuild = "."\n', "takes image or build, not both"),
        ('[api]\ncommand = "s {port}"\n[api.docker]\ndockerfile = "x"\n', 'add build = "folder"'),
        ('[api]\ncommand = "s {port}"\n[api.docker]\nbuild = "nowhere"\n', "there is no"),
        ("[api\n", "not valid TOML"),
    ],
)
def test_malformed_stack_files_are_refused_in_one_line(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(StackFileError) as error:
        load_stack_file(path)
    assert fragment in str(error.value) and str(path) in str(error.value)
    assert "\n" not in str(error.value)


def test_workload_templates():
    key, path, body, expected = Workload().record("r1", 7)
    assert (key, path) == ("r1-7@load.test", "/users")
    assert body == {"name": "user-r1-7", "email": "r1-7@load.test"}
    assert Workload().matches({"id": 1, **body}, expected)
    assert not Workload().matches({"name": "other", "email": key}, expected)


LEGACY_REFERENCE = """
[api]
command = ["{python}", "-m", "uvicorn", "users_api.main:app", "--host", "{host}", "--port", "{port}",
           "--timeout-graceful-shutdown", "3", "--no-server-header", "--loop", "asyncio"]
cwd = "CWD"
env = { DATABASE_URL = "{sqlalchemy_url}", APP_NAME = "users-api", PYTHONPATH = "{stack_dir}/api" }
health_path = "/health"
stop_signal = "SIGTERM"

[database]
name = "users"
user = "app"
"""


def test_the_single_api_form_loads_as_api_using_postgres_like_the_reference_stack(tmp_path):
    from support.backends.process.backend import connection_values

    old = load_stack_file(write(tmp_path, LEGACY_REFERENCE.replace("CWD", str(DEFAULT_STACK_FILE.parent / "api"))))
    new = load_stack_file(DEFAULT_STACK_FILE)
    assert list(old.services) == ["api", "postgres"] and set(new.services) == {"api", "postgres"}
    assert old.start_order == new.start_order == ("postgres", "api")
    assert old.links == new.links == (("api", "postgres"),)
    assert old.target == new.target == "api" and old.records == new.records == "users"
    assert old.workload == new.workload
    assert old.services["postgres"] == new.services["postgres"]
    assert (old.database_name, old.database_user) == (new.database_name, new.database_user) == ("users", "app")
    for field_name in ("command", "cwd", "stop_signal", "uses", "depends_on", "ready", "health_path", "before_start"):
        assert getattr(old.api, field_name) == getattr(new.api, field_name), field_name
    values = connection_values("127.0.0.1", 6000, "users", "app", "pw") | {"stack_dir": "/s"}
    assert old.api.environment(values) == new.api.environment(values)


THREE_SERVICES = """
[services.db]
kind = "postgres"
databases = [{ name = "notes", user = "notes" }, { name = "audit", user = "auditor" }]

[services.cache]
command = ["redis-server", "--port", "{port}"]

[services.web]
command = ["{python}", "app.py", "--port", "{port}"]
env = { DB = "{db.url}", CACHE = "{cache.host}:{cache.port}" }
uses = ["db", "cache"]
before_start = [["{python}", "migrate.py", "{db.url}"], "seed --small"]
ready = { http = "/ready", timeout = 20 }
health = "/healthz"
stop_signal = "SIGINT"

[services.worker]
command = ["{python}", "worker.py"]
env = { DB = "{db.sqlalchemy_url}" }
uses = ["db"]
depends_on = ["web"]
ready = { command = ["{python}", "-c", "pass"] }

[workload]
target = "web"
records = "notes"
"""


def test_a_stack_of_several_services_with_links_before_start_and_ready_kinds(tmp_path):
    definition = load_stack_file(write(tmp_path, THREE_SERVICES))
    assert definition.start_order == ("db", "cache", "web", "worker")
    assert definition.links == (("web", "db"), ("web", "cache"), ("worker", "db"))
    assert (definition.target, definition.records, definition.database_name) == ("web", "notes", "notes")
    web = definition.services["web"]
    assert web.before_start == (("{python}", "migrate.py", "{db.url}"), ("seed", "--small"))
    assert (web.ready.kind, web.ready.target, web.ready.timeout, web.ready.any_status) == ("http", "/ready", 20, False)
    assert web.health_path == "/healthz" and web.cwd == tmp_path
    assert definition.services["cache"].ready.kind == "tcp"  # it listens: a connect tells it is up
    assert definition.services["worker"].ready.argv == ("{python}", "-c", "pass")
    assert not definition.services["worker"].listens
    assert [d.user for d in definition.services["db"].databases] == ["notes", "auditor"]


@pytest.mark.parametrize(
    "change, fragment",
    [
        (
            ('uses = ["db", "cache"]', 'uses = ["db", "queue"]'),
            "[services.web] uses names 'queue', which is not another service of this stack; services: db, cache, web",
        ),
        (('depends_on = ["web"]', 'depends_on = ["web"]\n[services.cache.x]'), "unknown [services.cache] field(s) x"),
        (
            ('ready = { command = ["{python}", "-c", "pass"] }', ""),
            "[services.worker] needs ready = { command = [...] } (or sql for a database it fills): its command has no",
        ),
        (
            ("{db.sqlalchemy_url}", "{cache.port}"),
            "[services.worker] env has {cache.port}, but 'cache' is not in its uses",
        ),
        (('{db.url}", CACHE', '{db.password}", CACHE'), "[services.web] env has {db.password}; db offers {db.host}"),
        (('target = "web"', 'target = "site"'), "[workload] target = 'site' is not a service of this stack"),
        (('target = "web"', 'target = "worker"'), "[services.worker] command must use {port}: the suite chooses"),
        (
            ('ready = { http = "/ready", timeout = 20 }', 'ready = { http = "/ready", tcp = true }'),
            "[services.web] ready takes exactly one of http, tcp, sql, command",
        ),
        (
            ('uses = ["db"]\ndepends_on', 'uses = ["db", "worker"]\ndepends_on'),
            "[services.worker] uses names 'worker', which is not another service",
        ),
        (
            ('uses = ["db", "cache"]', 'uses = ["db", "cache", "worker"]'),
            "[services.web] uses 'worker', which listens on no {port}",
        ),
        (('kind = "postgres"', 'kind = "mysql"'), "[services.db] kind='mysql': use \"command\""),
        (
            ('"{port}"]\n\n[services.web]', '"{port}"]\ndepends_on = ["worker"]\n\n[services.web]'),
            "[services.cache] depends_on: a dependency cycle cache -> worker -> web -> cache; no service can start first",
        ),
    ],
)
def test_a_broken_stack_of_several_services_is_refused_in_one_line(tmp_path, change, fragment):
    text = THREE_SERVICES.replace(*change)
    assert text != THREE_SERVICES
    path = write(tmp_path, text)
    with pytest.raises(StackFileError) as error:
        load_stack_file(path)
    assert fragment in str(error.value) and str(path) in str(error.value), str(error.value)
    assert "\n" not in str(error.value)


def test_the_readmes_stack_file_with_migrations_and_a_login_loads(tmp_path):
    readme = (DEFAULT_STACK_FILE.parents[1] / "README.md").read_text()
    block = readme.split("### A service with migrations and a login")[1].split("```toml")[1].split("```")[0]
    definition = load_stack_file(write(tmp_path, block))
    assert definition.start_order == ("postgres", "api") and definition.records == "notes"
    assert len(definition.api.before_start) == 2 and definition.api.ready.timeout == 30


def test_the_docker_backend_refuses_in_one_line_a_stack_it_cannot_run_yet(tmp_path):
    from support.backends.docker.backend import check_docker_shape

    check_docker_shape(load_stack_file(DEFAULT_STACK_FILE))  # the reference stack runs there
    with pytest.raises(
        StackFileError,
        match=r"stack.toml: \[services.db\] the Docker backend runs one postgres "
        "with one database; run this stack with -D backend=process",
    ):
        check_docker_shape(load_stack_file(write(tmp_path, THREE_SERVICES)))
    one_database = THREE_SERVICES.replace(', { name = "audit", user = "auditor" }', "")
    with pytest.raises(StackFileError, match=r"\[services.web\] before_start is not run by the Docker backend"):
        check_docker_shape(load_stack_file(write(tmp_path, one_database)))
    several = load_stack_file(write(tmp_path, one_database.replace("before_start", "# before_start")))
    check_docker_shape(several)  # command services beside the target run on the host network
    with pytest.raises(
        StackFileError,
        match=r"\[services.cache\] the Docker backend runs the workload's target "
        r"and one postgres only \(db, web\) on docker_network=bridge",
    ):
        check_docker_shape(several, "bridge")
