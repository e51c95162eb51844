import pytest

from support.stack.stack_file import DEFAULT_STACK_FILE, StackFileError, load_stack_file
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


@pytest.mark.parametrize("text, fragment", [
    ("[api]\n", "[api] needs a command"),
    ('[api]\ncommand = "serve"\n', "must use {port}"),
    ('[api]\ncommand = "s {port}"\nhealth_path = "health"\n', "must start with /"),
    ('[api]\ncommand = "s {port}"\nstop_signal = "SIGFOO"\n', "is not a signal name"),
    ('[api]\ncommand = "s {port}"\n[workload]\nread_path = "/things"\n', "must contain {id}"),
    ('[api]\ncommand = "s {port}"\n[workload]\ncompare = ["age"]\n', "compare names 'age'"),
    ('[api]\ncommand = "s {port}"\n[workload]\ncolour = "red"\n', "unknown workload field(s) colour"),
    ('[apii]\n', "unknown section(s) apii"),
    ('[api]\ncommand = "s {port}"\n[api.docker]\nfiles = "x"\n', "[api.docker] takes image"),
    ('[api]\ncommand = "s {port}"\n[api.docker]\nimage = "x"\nbuild = "."\n', "takes image or build, not both"),
    ('[api]\ncommand = "s {port}"\n[api.docker]\ndockerfile = "x"\n', "add build = \"folder\""),
    ('[api]\ncommand = "s {port}"\n[api.docker]\nbuild = "nowhere"\n', "there is no"),
    ('[api\n', "not valid TOML"),
])
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
