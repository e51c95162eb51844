"""The replicated stack (stack/ha) on the Docker backend: the same scenarios as on the process backend pass with
every member in a container of the HA image (stack/docker/ha.Dockerfile), and nothing is left afterwards.

One behave run (one cluster: three etcd members, three Patroni nodes, the database's HAProxy, two API replicas
and their balancer, each a container on the host network) for two scenarios: the primary killed under heavy load
(Patroni's failover, the kill a crash inside the node's container, kept down with ``docker kill``), and a
switchover (Patroni's REST API, never two writers); and one proof that the primary-kill scenario can fail there
(the API variant that pins its pool to the first primary's address never recovers). About 75 s and 80 s. Skipped without a Docker engine (failed under
CHAOS_REQUIRE_DOCKER=1); the first run builds the HA image (about 30 s with Debian's mirror at hand).
"""

from __future__ import annotations

import re

from support.backends.docker.engine import docker_client
from support.backends.docker.labels import RUN_LABEL
from tests.docker_engine import require_docker
from tests.suite_runner import BROKEN, REPO, leftovers, run_behave

FEATURES = str(REPO / "features" / "ha" / "failover.feature")
DOCKER = ("-D", "backend=docker", "-D", "load_baseline=3")


def test_the_primary_killed_and_a_switchover_pass_on_docker_and_leave_nothing(tmp_path):
    require_docker()
    run = run_behave(
        tmp_path / "work",
        *DOCKER,
        "-D", "stack_file=stack/ha/stack.toml",
        "--tags=@failover or @switchover",
        FEATURES,
    )  # fmt: skip
    assert run.returncode == 0, run.output[-4000:]
    assert re.search(r"\b2 scenarios passed, 0 failed", run.output), run.output[-3000:]
    _nothing_left(run)


def test_a_pool_pinned_to_the_first_primary_does_not_recover_on_docker(tmp_path):
    require_docker()
    stack = f"stack_file={BROKEN / 'pinned_primary.toml'}"
    run = run_behave(tmp_path / "work", *DOCKER, "-D", stack, "--tags=@failover", FEATURES)
    assert run.returncode != 0, run.output[-3000:]
    assert "the API never recovered" in run.output, run.output[-3000:]
    _nothing_left(run)


def _nothing_left(run) -> None:
    """No process, port or container of the run is left."""
    assert leftovers(run) == []
    client = docker_client()
    try:
        for run_dir in run.run_dirs:
            left = client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_dir.name}"})
            assert [c.name for c in left] == []
    finally:
        client.close()
