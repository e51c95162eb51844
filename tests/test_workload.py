"""The general workload: target, records, base_path, headers, auth, several operations; and, end to end, the
real load worker and the record checks against a service with a form login, a /v1 prefix and tokens it revokes."""

from __future__ import annotations

import json
import secrets
import shutil
import time
import tomllib
from pathlib import Path

import pytest

from support.checks.records import check_users_intact, create_users
from support.checks.verdict import CheckFailed
from support.core.waiting import wait_until
from support.load.controller import start_load
from support.load.history import FAIL, OK, Request
from support.load.spec import LoadSpec
from support.stack import database
from support.stack.auth import Auth
from support.stack.operations import WorkloadError
from support.stack.workload import Workload, parse_workload

NOTES = """
[workload]
target = "notes-api"
records = "notes"
base_path = "/v1"
headers = { X-Tenant = "chaos", X-Run = "{run}", X-Key = "k-{env.CHAOS_TEST_KEY}" }
reset_sql = "TRUNCATE notes RESTART IDENTITY"
count_sql = "SELECT count(*) FROM notes"

[workload.auth]
login = { method = "POST", path = "/token", form = { username = "chaos", password = "s3cret" } }
token_field = "access_token"
header = "Authorization"
scheme = "Bearer"

[[workload.operations]]
name = "create"
weight = 2
method = "POST"
path = "/notes"
json = { slug = "{key}", title = "{name}" }
key_template = "note-{run}-{seq}"
name_template = "Note {seq} of {run}"
read = { path = "/notes/{id}", id_field = "note_id", compare = ["title", "slug"] }
find_sql = "SELECT slug, title, slug FROM notes WHERE slug = ANY(%(keys)s)"

[[workload.operations]]
name = "read"
weight = 2
reads = "create"

[[workload.operations]]
name = "list"
weight = 1
method = "GET"
path = "/notes"
"""


def notes_workload(text: str = NOTES) -> Workload:
    return parse_workload(tomllib.loads(text)["workload"], "notes.toml")


def test_a_workload_with_a_form_login_a_base_path_and_several_operations_loads(monkeypatch):
    monkeypatch.setenv("CHAOS_TEST_KEY", "42")
    w = notes_workload()
    assert (w.target, w.records, w.table, w.base_path) == ("notes-api", "notes", "notes", "/v1")
    assert w.header_values("r1") == {"X-Tenant": "chaos", "X-Run": "r1", "X-Key": "k-42"}
    assert w.auth == Auth(login_path="/token", login_form={"username": "chaos", "password": "s3cret"})
    assert w.auth.login_request() == (
        "POST",
        "/token",
        b"username=chaos&password=s3cret",
        "application/x-www-form-urlencoded",
    )
    assert w.auth.header_value("abc") == "Bearer abc"
    assert [op.name for op in w.operations] == ["create", "read", "list"]
    assert w.weights(0.9) == [2, 2, 1]  # given weights: the write fraction setting does not apply
    key, path, body, expected = w.record("r1", 3)
    assert (key, path, body) == ("note-r1-3", "/notes", {"slug": "note-r1-3", "title": "Note 3 of r1"})
    assert expected == "Note 3 of r1\tnote-r1-3" and w.matches({"note_id": 1, **body}, expected)
    assert w.read_path_for(7) == "/notes/7" and w.id_field == "note_id"


def test_the_flat_form_of_today_is_one_write_and_one_read_back_weighted_by_the_write_fraction():
    flat = Workload.from_dict({"create_path": "/users", "read_path": "/users/{id}", "compare": ["name", "email"]})
    assert flat == Workload()
    write, read = flat.operations
    assert write.is_write and read.reads == "create" and flat.weights(0.3) == [0.3, 0.7]
    assert (flat.create_method, flat.create_path, flat.read_path, flat.table, flat.records) == (
        "POST",
        "/users",
        "/users/{id}",
        "users",
        "users",
    )
    assert flat.record("r1", 7)[0] == "r1-7@load.test" and flat.base_path == "" and flat.auth is None


@pytest.mark.parametrize(
    "workload", [Workload(), notes_workload(), notes_workload(NOTES.replace("json = {", "form = {"))]
)
def test_a_workload_travels_as_json(workload):
    assert Workload.from_dict(json.loads(json.dumps(workload.to_dict()))) == workload


@pytest.mark.parametrize(
    "text, fragment",
    [
        ('[workload]\nbase_path = "v1"\n', "base_path='v1' must start with /"),
        ("[workload]\nheaders = { X = 1 }\n", "headers must be a table of strings"),
        ('[workload.auth]\nscheme = "Bearer"\n', "[workload.auth] needs exactly one of login"),
        ('[workload.auth]\ntoken_env = "T"\ntoken_command = ["x"]\n', "got token_command, token_env"),
        ('[workload.auth]\nlogin = { path = "token" }\n', "[workload.auth].login.path='token' must be a path"),
        ('[workload.auth]\nlogin = { path = "/t", json = {}, form = {} }\n', "takes json or form, not both"),
        ('[workload.auth]\ntoken_env = "T"\ncolour = 1\n', "[workload.auth]: unknown field(s) colour"),
        ('[workload]\ncreate_path = "/u"\n[[workload.operations]]\nname = "x"\n', "cannot be mixed"),
        ('[[workload.operations]]\nname = "list"\n', "no operation is a write"),
        ('[[workload.operations]]\nmethod = "GET"\n', "operations[0] needs a name"),
        ('[[workload.operations]]\nname = "r"\nreads = "create"\n', "operations[0] (r): reads='create' names no write"),
        (
            '[[workload.operations]]\nname = "c"\nfind_sql = "SELECT %(keys)s"\nmethod = "POST"\njson = { a = "{key}" }\n',
            "operations[0] (c): a write needs read",
        ),
        (
            '[[workload.operations]]\nname = "c"\nfind_sql = "x %(keys)s"\nmethod = "POST"\njson = { a = "{key}" }\n'
            'read = { path = "/c/{id}", compare = ["b"] }\n',
            "operations[0] (c): read.compare names 'b'",
        ),
        (
            '[[workload.operations]]\nname = "c"\nfind_sql = "x"\nmethod = "POST"\njson = { a = "{key}" }\n'
            'read = { path = "/c/{id}" }\n',
            "find_sql must select rows by the key list",
        ),
        (
            '[[workload.operations]]\nname = "c"\nweight = -1\nfind_sql = "x %(keys)s"\njson = { a = "{key}" }\n',
            "operations[0] (c): weight=-1 must be a number >= 0",
        ),
        ('[[workload.operations]]\nname = "c"\nspeed = 3\n', "operations[0] (c): unknown field(s) speed"),
        ('[workload]\nread_path = "/things"\n', "read_path='/things' must contain {id}"),
        ('[workload]\ncolour = "red"\n', "unknown workload field(s) colour"),
    ],
)
def test_a_bad_workload_is_refused_in_one_line_naming_the_field(text, fragment):
    table = tomllib.loads(text).get("workload", {})
    with pytest.raises(WorkloadError) as error:
        parse_workload(table, "stack.toml")
    message = str(error.value)
    assert fragment in message and message.startswith("stack.toml: [workload] ") and "\n" not in message


def test_a_token_from_a_command_or_a_variable(monkeypatch):
    monkeypatch.setenv("CHAOS_TOKEN", "from-env")
    by_env = parse_workload({**tomllib.loads(NOTES)["workload"], "auth": {"token_env": "CHAOS_TOKEN"}}, "s").auth
    assert by_env.token_from_source() == "from-env"
    by_command = parse_workload(
        {**tomllib.loads(NOTES)["workload"], "auth": {"token_command": ["echo", "tok"], "scheme": ""}}, "s"
    ).auth
    assert by_command.token_from_source() == "tok" and by_command.header_value("tok") == "tok"


# -- end to end: the real load worker and the record checks against the notes service ------------------------


@pytest.fixture(scope="module")
def postgres():
    from support.backends.process.pg_binaries import PgNotFound, find_pg_binaries, run_as_for
    from support.backends.process.postgres import PostgresProcess
    from support.core.config import Settings

    settings = Settings()
    try:
        run_as = run_as_for(settings.pg_user)
        bins = find_pg_binaries("", run_as, settings.work_root_path / "cache")
    except PgNotFound as error:
        pytest.skip(f"no PostgreSQL binaries: {error}")
    run_dir = settings.work_root_path / f"test-{secrets.token_hex(4)}"
    run_dir.mkdir(parents=True)
    run_dir.chmod(0o755)
    service = PostgresProcess(bins, run_as, run_dir, secrets.token_urlsafe(12))
    service.initdb()
    service.start(30)
    yield service
    service.close()
    shutil.rmtree(run_dir)


@pytest.fixture
def notes(postgres):
    from tests.notes_service import NotesService

    service = NotesService(postgres.dsn())
    yield service
    service.close()


def run_load(notes, tmp_path: Path, workload: Workload, revoke_after: int | None = None) -> tuple[list, dict]:
    """Load the notes service at 40/s until 40 writes are answered (revoking every token once ``revoke_after``
    writes are), then 2 s more; (history, the worker's summary)."""
    spec = LoadSpec.open_rate(notes.url, 40, workload=workload.to_dict(), max_duration=30, request_timeout=3, seed=7)
    with start_load(spec, tmp_path) as run:
        if revoke_after is not None:
            wait_until(lambda: run.progress.get("sent", 0) >= revoke_after, 10, f"{revoke_after} requests sent")
            notes.revoke()
        wait_until(lambda: run.progress.get("sent", 0) >= 60, 15, "60 requests sent")
        history = run.stop()
        return history, run.summary or {}


def check_every_write_acknowledged_and_found(history: list[Request], dsn: str, workload: Workload) -> None:
    """The test's property: writes were sent, every one acknowledged, and every one stored as sent."""
    writes = [r for r in history if r.op == "write"]
    assert len(writes) >= 10, f"only {len(writes)} writes"
    refused = [r for r in writes if r.outcome != OK and r.status != 401]
    assert not refused, f"writes not acknowledged: {refused[:3]}"
    acked = [r for r in writes if r.outcome == OK]
    assert len(acked) >= 10, f"only {len(acked)} of {len(writes)} writes acknowledged: {writes[:3]}"
    stored = database.rows_for_keys(dsn, workload, [r.key for r in acked])
    assert {r.key: r.body for r in acked} == {k: "\t".join(v) for k, v in stored.items()}


def test_the_load_logs_in_sends_under_the_base_path_and_logs_in_again_after_a_401(notes, postgres, tmp_path):
    workload = notes_workload()
    history, summary = run_load(notes, tmp_path, workload, revoke_after=20)
    check_every_write_acknowledged_and_found(history, postgres.dsn(), workload)
    # the revocation answered 401 (recorded like any answer), then a new login, then success again
    unauthorized = [r for r in history if r.status == 401]
    assert unauthorized and all(r.outcome == FAIL for r in unauthorized)
    after = [r for r in history if r.start > max(r.start for r in unauthorized)]
    assert len([r for r in after if r.outcome == OK]) >= 10
    assert summary["tokens"] == notes.logins == 2
    reads = [r for r in history if r.op == "read" and r.key]
    assert reads and all(r.outcome == OK for r in reads if r.status == 200), "a read-back served wrong content"
    assert [r for r in history if r.op == "read" and not r.key and r.outcome == OK], "no list request succeeded"


def test_without_the_auth_the_same_load_fails_its_check(notes, postgres, tmp_path):
    table = tomllib.loads(NOTES)["workload"]
    del table["auth"]
    workload = parse_workload(table, "notes.toml")
    history, _ = run_load(notes, tmp_path, workload)
    assert {r.status for r in history} == {401} and notes.logins == 0
    with pytest.raises(AssertionError, match="writes acknowledged"):
        check_every_write_acknowledged_and_found(history, postgres.dsn(), workload)


def test_records_are_created_and_verified_through_the_same_login_and_prefix(notes, postgres):
    workload = notes_workload()
    records = create_users(notes.url, workload, 3)
    assert [r.key[:5] for r in records] == ["note-"] * 3 and notes.logins == 1
    notes.revoke()
    refused = notes.unauthorized
    check_users_intact(notes.url, postgres.dsn(), workload, records)  # a 401, a new login, then the reads
    assert notes.unauthorized == refused + 1 and notes.logins == 2
    assert database.count_records(postgres.dsn(), workload) == 3
    table = tomllib.loads(NOTES)["workload"]
    del table["auth"]
    with pytest.raises(CheckFailed, match="could not create record 1 of 1: 401"):
        create_users(notes.url, parse_workload(table, "notes.toml"), 1)
    started = time.monotonic()
    wrong = parse_workload(
        {
            **tomllib.loads(NOTES)["workload"],
            "auth": {"login": {"path": "/token", "form": {"username": "chaos", "password": "no"}}},
        },
        "notes.toml",
    )
    with pytest.raises(CheckFailed, match="no auth token for the workload: the login POST /token was answered 400"):
        create_users(notes.url, wrong, 1)
    assert time.monotonic() - started < 5


def test_a_stack_file_carries_the_general_workload_to_the_stack_definition(tmp_path):
    from support.stack.stack_file import load_stack_file

    services = (
        '[services.postgres]\nkind = "postgres"\ndatabases = [{ name = "notes", user = "notes" }]\n'
        '[services.notes-api]\ncommand = ["{python}", "app.py", "--port", "{port}"]\nuses = ["postgres"]\n'
        'ready = { http = "/healthz" }\nhealth = "/healthz"\n'
    )
    path = tmp_path / "stack.toml"
    path.write_text(services + NOTES)
    definition = load_stack_file(path)
    assert definition.workload == notes_workload()
    path.write_text(services + NOTES.replace('base_path = "/v1"', 'base_path = "v1"'))
    with pytest.raises(ValueError) as error:
        load_stack_file(path)
    assert str(path) in str(error.value) and "base_path='v1' must start with /" in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("source", ["token_env", "token_command"])
def test_the_load_sends_a_token_from_a_variable_or_a_command(notes, postgres, tmp_path, monkeypatch, source):
    import httpx

    from tests.notes_service import PASSWORD, USERNAME

    token = httpx.post(f"{notes.url}/v1/token", data={"username": USERNAME, "password": PASSWORD}).json()
    monkeypatch.setenv("CHAOS_NOTES_TOKEN", token["access_token"])  # the worker inherits the environment
    auth = (
        {"token_env": "CHAOS_NOTES_TOKEN"}
        if source == "token_env"
        else {"token_command": ["sh", "-c", "echo $CHAOS_NOTES_TOKEN"]}
    )
    workload = parse_workload({**tomllib.loads(NOTES)["workload"], "auth": auth}, "notes.toml")
    history, summary = run_load(notes, tmp_path, workload)
    check_every_write_acknowledged_and_found(history, postgres.dsn(), workload)
    assert not [r for r in history if r.status == 401] and summary["tokens"] == 1 and notes.logins == 1
