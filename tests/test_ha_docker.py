"""The replicated stack (stack/ha) on the Docker backend: the same scenarios as on the process backend pass with
every member in a container of the HA image (stack/docker/ha.Dockerfile), and nothing is left afterwards.

One behave run (one cluster: three etcd members, three Patroni nodes, the database's HAProxy, two API replicas
and their balancer, each a container on the host network) for two scenarios: the primary killed under heavy load
(Patroni's failover, the kill a crash inside the node's container, kept down with ``docker kill``), and a
switchover (Patroni's REST API, never two writers). Skipped without a Docker engine (failed under
CHAOS_REQUIRE_DOCKER=1); the first run builds the HA image (about 30 s with Debian's mirror at hand).
"""

from __future__ import annotations

import re

from support.backends.docker.engine import docker_client
from support.backends.docker.labels import RUN_LABEL
from tests.docker_engine import require_docker
from tests.suite_runner import REPO, leftovers, run_behave

FEATURES = str(REPO / "features" / "ha" / "failover.feature")


def test_the_primary_killed_and_a_switchover_pass_on_docker_and_leave_nothing(tmp_path):
    require_docker()
    run = run_behave(
        tmp_path / "work",
        "-D", "backend=docker",
        "-D", "stack_file=stack/ha/stack.toml",
        "-D", "load_baseline=3",
        "--tags=@failover or @switchover",
        FEATURES,
    )  # fmt: skip
    assert run.returncode == 0, run.output[-4000:]
    assert re.search(r"\b2 scenarios passed, 0 failed", run.output), run.output[-3000:]
    assert leftovers(run) == []
    client = docker_client()
    try:
        for run_dir in run.run_dirs:
            left = client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_dir.name}"})
            assert [c.name for c in left] == []
    finally:
        client.close()
