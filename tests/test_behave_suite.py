"""The behave suite itself, run end to end on both backends, and proof that it can fail."""

import shutil

from docker_engine import docker_engine
from suite_runner import REPO, leftovers, project_with, run_behave


def test_chaos_suite_passes_and_leaves_nothing_behind(tmp_path):
    run = run_behave(tmp_path / "work", "--tags=@chaos")
    assert run.returncode == 0, run.output[-6000:]
    assert " 0 failed" in run.output and "scenarios passed" in run.output
    assert len(run.run_dirs) == 1
    assert leftovers(run) == []


def test_unknown_service_fails_at_once_listing_the_valid_ones(tmp_path):
    project = project_with(
        tmp_path,
        "typo.feature",
        "Feature: typo\n  Scenario: a typo\n    Given the stack is healthy\n    When postgress restarts\n",
    )
    run = run_behave(tmp_path / "work", cwd=project)
    assert run.returncode != 0
    assert "unknown service 'postgress'; this stack has: api, postgres" in run.output


def test_malformed_setting_is_one_line_and_starts_nothing(tmp_path):
    run = run_behave(tmp_path / "work", "-D", "load_heavy=lots", "--tags=@chaos")
    assert run.returncode == 2
    assert "chaos-suite: load_heavy='lots' (from -D load_heavy) is not a number" in run.output
    assert "Traceback" not in run.output
    assert run.run_dirs == []


def test_a_missing_stack_file_is_one_line_and_starts_nothing(tmp_path):
    run = run_behave(tmp_path / "work", "-D", "stack_file=/nonexistent/stack.toml", "--tags=@chaos")
    assert run.returncode == 2
    assert "chaos-suite: /nonexistent/stack.toml: no such stack file" in run.output
    assert run.run_dirs == [] or leftovers(run) == []


def _require_docker() -> None:
    docker_engine(timeout=10).close()


def test_chaos_suite_passes_on_the_docker_backend(tmp_path):
    _require_docker()
    run = run_behave(tmp_path / "work", "-D", "backend=docker", "--tags=@chaos")
    assert run.returncode == 0, run.output[-6000:]
    assert " 0 failed" in run.output and "scenarios passed" in run.output
    assert leftovers(run) == []


def test_a_service_the_project_does_not_ship_runs_on_docker_from_its_own_dockerfile(tmp_path):
    _require_docker()
    service = tmp_path / "notes_service"  # outside the repository, as a user's service is
    shutil.copytree(REPO / "examples" / "notes_service", service)
    run = run_behave(
        tmp_path / "work",
        "-D",
        "backend=docker",
        "-D",
        f"stack_file={service / 'stack.toml'}",
        "-n",
        "The API rides out a Postgres restart under load|Data survives an API restart",
    )
    assert run.returncode == 0, run.output[-6000:]
    assert "2 scenarios passed, 0 failed" in run.output
    from support.backends.docker.engine import docker_client
    from support.backends.docker.images import service_image_spec

    client = docker_client(timeout=10)
    try:
        name = service_image_spec(service).name
        built = client.images.list(filters={"label": f"chaos-suite.image={name}"})
    finally:
        client.close()
    assert built and "python3" in " ".join(built[0].attrs["Config"]["Cmd"])  # the notes service's own image
    assert leftovers(run) == []
