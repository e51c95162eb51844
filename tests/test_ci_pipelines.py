"""The CI pipelines of ci/: each validates (actionlint; GitLab's published JSON schema, as check-jsonschema
vendors it) and every shell step of both runs here, on a fresh clone, as the pipelines would run it.

The dry run narrows ``FEATURES`` to one small feature with a passing and a failing scenario, so it also
shows the pipelines' promise: the failed scenario fails the job, and the report is published all the
same, with its history. What publishes goes to local places: the gh-pages push to a bare repository in
the test's directory, GitLab Pages' ``public/`` stays where the job leaves it, and the published site
GitLab fetches the history from is a ``file://`` URL. The ``uses:`` actions of GitHub are not shell steps:
the dry run does what they do (check out, upload and download the results) with plain copies.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
GITHUB = REPO / "ci" / "github-actions.yml"
GITLAB = REPO / "ci" / "gitlab-ci.yml"
BIN = Path(sys.executable).parent

PROBE = """\
@chaos
Feature: CI probe

  Scenario: Health is reported while the stack runs
    Given the stack is healthy
    Then the health endpoint reports healthy within 5 seconds

  Scenario: Health is wrongly expected while Postgres is stopped
    Given the stack is healthy
    When postgres is stopped
    Then the health endpoint reports healthy within 1 seconds
"""


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} is missing from the venv: bash setup.sh --dev installs it (requirements-dev.txt)")
    return str(path)


def test_github_workflow_passes_actionlint_and_a_broken_one_does_not(tmp_path) -> None:
    done = subprocess.run([_tool("actionlint"), str(GITHUB)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text(GITHUB.read_text().replace("runs-on: ubuntu-latest", "run-on: ubuntu-latest", 1))
    done = subprocess.run([_tool("actionlint"), str(broken)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "run-on" in done.stdout, done.stdout + done.stderr


def test_gitlab_file_matches_gitlabs_schema_and_a_broken_one_does_not(tmp_path) -> None:
    check = [_tool("check-jsonschema"), "--builtin-schema", "vendor.gitlab-ci"]
    done = subprocess.run([*check, str(GITLAB)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text(
        GITLAB.read_text().replace("  artifacts:\n    paths: [public]", "  artifact:\n    paths: [public]")
    )
    done = subprocess.run([*check, str(broken)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "'artifact' was unexpected" in done.stdout, done.stdout + done.stderr


def test_gitlab_jobs_publish_after_a_failure_and_report_junit() -> None:
    """What the schema cannot say: needs name real jobs, pages runs after a failure, results always kept."""
    config = yaml.safe_load(GITLAB.read_text())
    jobs = {name: job for name, job in config.items() if isinstance(job, dict) and ("stage" in job or "extends" in job)}
    for name, job in jobs.items():
        for need in job.get("needs", []):
            assert need["job"] in jobs, f"{name} needs {need['job']}, which is no job"
    assert [rule.get("when") for rule in config["pages"]["rules"]] == ["always"]
    assert config["pages"]["artifacts"]["paths"] == ["public"]
    chaos = config[".chaos"]
    assert chaos["artifacts"]["when"] == "always"
    assert chaos["artifacts"]["reports"]["junit"] == "reports/junit/*.xml"
    assert all(config[name]["extends"] == ".chaos" for name in ("chaos-process", "chaos-docker"))


# -- the dry run ---------------------------------------------------------------------------------------


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False).returncode == 0


def _backends() -> list[str]:
    if _docker_answers():
        return ["process", "docker"]
    if os.environ.get("CHAOS_REQUIRE_DOCKER") == "1":
        pytest.fail("CHAOS_REQUIRE_DOCKER=1 but no Docker engine answers: the pipelines' docker job cannot run")
    return ["process"]


class Shell:
    """Runs pipeline shell steps in the clone, keeping a transcript for the assertion messages."""

    def __init__(self, clone: Path, env: dict[str, str]) -> None:
        self.clone = clone
        self.env = env
        self.transcript: list[str] = []

    def run(self, script: str, env: dict[str, str] | None = None, timeout: float = 900) -> int:
        if shutil.which("sudo") is None and os.geteuid() == 0:
            script = re.sub(r"(^|\s)sudo\s+", r"\1", script)  # root without sudo: the same command
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=self.clone,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        self.transcript.append(f"$ {script}\n-> {done.returncode}\n{(done.stdout + done.stderr)[-1500:]}")
        return done.returncode

    def tail(self) -> str:
        return "\n".join(self.transcript)[-6000:]


def _github_expr(text: str, matrix: dict[str, str]) -> str:
    return re.sub(r"\$\{\{\s*matrix\.(\w+)\s*\}\}", lambda m: matrix[m.group(1)], text)


def _runs_now(condition: str | None, failed: bool, matrix: dict[str, str], event: str) -> bool:
    """The step and job conditions the workflow uses; an unknown one fails the test rather than be guessed."""
    if condition is None:
        return not failed
    known = {
        "matrix.backend == 'docker'": (not failed) and matrix.get("backend") == "docker",
        "${{ !cancelled() }}": True,
        "${{ !cancelled() && github.event_name != 'pull_request' }}": event != "pull_request",
    }
    assert condition in known, f"the dry run does not know the condition {condition!r}: teach it"
    return known[condition]


def _github_job(shell: Shell, job: dict, matrix: dict[str, str], env: dict[str, str]) -> bool:
    """Run the job's ``run:`` steps as GitHub would; True when the job failed."""
    failed = False
    for step in job["steps"]:
        if "run" not in step or not _runs_now(step.get("if"), failed, matrix, "push"):
            continue
        if shell.run(_github_expr(step["run"], matrix), env) != 0:
            failed = True
    return failed


def _fresh_clone(tmp_path: Path) -> tuple[Path, Path]:
    clone, remote = tmp_path / "clone", tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True, timeout=60)
    subprocess.run(["git", "-C", str(clone), "remote", "set-url", "origin", str(remote)], check=True, timeout=60)
    (clone / "ci_probe").mkdir()
    (clone / "ci_probe" / "probe.feature").write_text(PROBE)
    return clone, remote


def test_both_pipelines_run_here_fail_on_a_failed_scenario_and_still_publish_with_history(tmp_path) -> None:
    backends = _backends()
    work = Path("/tmp/chaos-suite-tests") / f"ci-{uuid.uuid4().hex[:8]}"  # PostgreSQL's user must enter it
    work.mkdir(parents=True)
    work.parent.chmod(0o755)
    clone, remote = _fresh_clone(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHAOS_", "VIRTUAL_ENV", "PYTHONPATH"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != str(BIN))
    env.update(CHAOS_WORK_ROOT=str(work), GITHUB_SHA="0" * 40)
    shell = Shell(clone, env)
    try:
        workflow = yaml.safe_load(GITHUB.read_text())
        flow_env = {**workflow["env"], "FEATURES": "ci_probe"}
        results = clone / "results"
        for backend in backends:
            failed = _github_job(shell, workflow["jobs"]["chaos"], {"backend": backend}, flow_env)
            assert failed, f"the failed scenario did not fail the chaos job on {backend}:\n{shell.tail()}"
            junit = "".join(p.read_text() for p in (clone / "reports" / "junit").glob("*.xml"))
            assert "<failure" in junit and "wrongly expected" in junit, shell.tail()
            # upload-artifact + download-artifact: the results land under results/allure-results-BACKEND
            shutil.copytree(clone / "reports" / "allure-results", results / f"allure-results-{backend}")
        report = workflow["jobs"]["report"]
        assert _runs_now(report["if"], True, {}, "push") and not _runs_now(report["if"], True, {}, "pull_request")
        for run in (1, 2):  # the second run finds the first report on gh-pages and grows its history
            assert not _github_job(shell, report, {}, flow_env), shell.tail()
            published = subprocess.run(
                ["git", "--git-dir", str(remote), "show", "gh-pages:process/history.jsonl"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            assert len(published.splitlines()) == run, shell.tail()
            assert shell.run("git worktree remove --force site") == 0, shell.tail()

        # GitLab: the chaos jobs, then pages with the GitHub report as the published site it fetches from
        pipeline = yaml.safe_load(GITLAB.read_text())
        variables = {**pipeline["variables"], "FEATURES": "ci_probe", "CI_PROJECT_DIR": str(clone)}
        shutil.rmtree(clone / "reports")
        for backend in backends:
            job = {**pipeline[".chaos"], **pipeline[f"chaos-{backend}"]}
            job_env = {**variables, **job["variables"]}
            script = "\n".join([*job.get("before_script", []), *job["script"]])
            assert shell.run(script, job_env) != 0, f"the failed scenario passed the chaos-{backend} job"
            assert shell.run("\n".join(job["after_script"]), job_env) == 0, shell.tail()
            assert (clone / "reports" / f"allure-results-{backend}").is_dir(), shell.tail()
        published_site = tmp_path / "pages"
        published_site.mkdir()
        archive = subprocess.run(
            ["git", "--git-dir", str(remote), "archive", "gh-pages"], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(published_site)], input=archive.stdout, check=True)
        pages_env = {**variables, "CI_PAGES_URL": published_site.as_uri()}
        assert shell.run("\n".join(pipeline["pages"]["script"]), pages_env) == 0, shell.tail()
        for backend in backends:
            assert (clone / "public" / backend / "index.html").is_file(), shell.tail()
            history = (clone / "public" / backend / "history.jsonl").read_text().splitlines()
            assert len(history) == 3, shell.tail()
    finally:
        shutil.rmtree(work, ignore_errors=True)
