"""A replicated database (``kind = "patroni"``) as containers: etcd members, Patroni-managed PostgreSQL nodes, HAProxy.

One container per member, all in the HA image (``stack/docker/ha.Dockerfile``:
Debian's patroni, postgresql-15, etcd-server and haproxy) on the host network,
labelled with the run, ``unless-stopped``, tini as PID 1. What each member runs
is what the process backend runs (the same plan, :func:`~support.backends.process.patroni.plan_replicated`;
the same Patroni configuration, etcd flags and HAProxy configuration), so the
cluster's links go through the same one fault proxy process on the host, which
host-networked containers reach on 127.0.0.1: the partition fault works unchanged.
A configuration file reaches its container in an environment variable, written
to the container's own /tmp by ``ha-entrypoint.sh`` (readable by its user only).
Each member's data lives in its container's writable layer: kept across the
container's restarts and stops, removed with it.

A node's kill (:meth:`ContainerService.kill`) signals every process inside
(Patroni and the PostgreSQL it started detached) and the engine restarts the
container; :meth:`ContainerService.crash` (``docker kill``) keeps it down until
started. PIDs that PostgreSQL reports (``pg_stat_activity``) are PIDs of the
container's namespace: :meth:`PatroniContainer.signal_server_process` maps them
to the host's.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from support.backends.docker.containers import ContainerService
from support.backends.docker.specs import ContainerSpec
from support.backends.process.haproxy import BalancerFrontends
from support.backends.process.patroni import (
    NodeLinks,
    ReplicatedPlan,
    describe_replicated,
    node_dsn,
    patroni_config,
    plan_replicated,
)
from support.core.ports import LOOPBACK
from support.stack.definitions import ServiceDefinition
from support.stack.readiness import check_listener, tcp_answers
from support.stack.replicated import ReplicatedDatabase

if TYPE_CHECKING:
    from docker import DockerClient

__all__ = [
    "PatroniContainer",
    "EtcdContainer",
    "BalancerContainer",
    "ReplicatedContainers",
    "make_replicated_containers",
]

#: where the HA image has Debian's PostgreSQL 15 and where a node keeps its data (the postgres user's home)
BIN_DIR = "/usr/lib/postgresql/15/bin"
DATA_DIR = "/var/lib/postgresql/pgdata"


def _spec(run_id: str, image: str, labels: dict[str, str], name: str, command: list[str], **more: Any) -> ContainerSpec:
    more.setdefault("environment", {})
    return ContainerSpec(
        name=f"chaos-suite-{run_id}-{name}", service=name, image=image, command=command, labels=labels, **more
    )


def _config_env(path: str, text: str) -> dict[str, str]:
    """What ``ha-entrypoint.sh`` writes to ``path`` before it starts the member."""
    return {"CHAOS_CONFIG_FILE": path, "CHAOS_CONFIG": text}


def namespace_pid(host_pid: int) -> int | None:
    """The PID process ``host_pid`` has in its own (innermost) PID namespace, from its ``NSpid`` line; None if gone."""
    try:
        with open(f"/proc/{host_pid}/status") as status:
            for line in status:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None


class PatroniContainer(ContainerService):
    """One PostgreSQL server under Patroni in a container (as the postgres user): ready once Patroni's REST
    ``/health`` says its PostgreSQL runs."""

    def __init__(self, client: DockerClient, spec: ContainerSpec, links: NodeLinks, password: str) -> None:
        super().__init__(client, spec, links.pg_port)
        self.pg_port, self.rest_port = links.pg_port, links.rest_port
        self.rest_url = f"http://{LOOPBACK}:{self.rest_port}"
        self._password = password

    def dsn(self, dbname: str = "postgres") -> str:
        """A superuser DSN straight to this node's PostgreSQL."""
        return node_dsn(self.pg_port, self._password, dbname)

    def signal_server_process(self, pid: int, sig: int) -> None:
        """``sig`` to process ``pid`` of this node's PostgreSQL as PostgreSQL names it (``pg_stat_activity``): a
        PID of the container's namespace, sent to the host process that has it. Raises ProcessLookupError when the
        container runs no such process."""
        for host_pid in self.pids():
            if namespace_pid(host_pid) == pid:
                os.kill(host_pid, sig)
                return
        raise ProcessLookupError(f"the {self.name} container runs no process {pid}")

    def is_ready(self) -> bool:
        check_listener(self.rest_port, self.state().get("Pid") or None, self.name)
        return httpx.get(self.rest_url + "/health", timeout=1.0).status_code == 200


class EtcdContainer(ContainerService):
    """One etcd member in a container: up once it accepts connections on its client port (as the process member)."""

    def __init__(self, client: DockerClient, spec: ContainerSpec, port: int, client_url: str) -> None:
        super().__init__(client, spec, port)
        self.client_url = client_url

    def is_ready(self) -> bool:
        self._check_listener()
        return tcp_answers(LOOPBACK, self._port)


class BalancerContainer(BalancerFrontends, ContainerService):
    """The database's HAProxy in a container (``image``), named as the database service (``plan.name``); ready
    once a primary answers through it."""

    def __init__(
        self, client: DockerClient, run_id: str, image: str, labels: dict[str, str], plan: ReplicatedPlan
    ) -> None:
        self.plan_frontends(plan.credentials.superuser)
        text = self.config(plan.balanced_nodes(), plan.options.check_interval)
        command = ["haproxy", "-db", "-f", "/tmp/haproxy.cfg"]
        spec = _spec(run_id, image, labels, plan.name, command, environment=_config_env("/tmp/haproxy.cfg", text))
        super().__init__(client, spec, self.write_port)

    def is_ready(self) -> bool:
        self._check_listener()
        return self.routes_to_a_primary()


@dataclass
class ReplicatedContainers:
    """A replicated database's containers (not created yet): ``members`` in start order (etcd, nodes, balancer),
    its ``plan`` (links and their proxy: the caller stops ``plan.proxy``) and its description."""

    members: dict[str, ContainerService]
    balancer: BalancerContainer
    plan: ReplicatedPlan
    database: ReplicatedDatabase


def make_replicated_containers(
    client: DockerClient,
    image: str,
    run_id: str,
    labels: dict[str, str],
    definition: ServiceDefinition,
    run_dir: Path,
    admin_password: str,
) -> ReplicatedContainers:
    """The containers of replicated database ``definition`` in ``image`` (the HA image), named ``etcd1..``,
    ``NAME1..`` and ``NAME``; only the links' proxy is started here."""
    plan = plan_replicated(definition, run_dir, admin_password)
    members: dict[str, ContainerService] = {}
    for member in plan.etcd:
        command = member.argv("etcd", f"/tmp/{member.name}-data")
        spec = _spec(run_id, image, labels, member.name, command)
        members[member.name] = EtcdContainer(client, spec, member.client_port, member.client_url)
    for node, links in plan.nodes.items():
        config = patroni_config(
            node, plan.scope, links, plan.options, plan.credentials, DATA_DIR, BIN_DIR, "/tmp/pgpass"
        )
        environment = _config_env("/tmp/patroni.yml", json.dumps(config))  # JSON is YAML
        spec = _spec(
            run_id, image, labels, node, ["patroni", "/tmp/patroni.yml"], environment=environment, user="postgres"
        )
        members[node] = PatroniContainer(client, spec, links, admin_password)
    balancer = BalancerContainer(client, run_id, image, labels, plan)
    members[plan.name] = balancer
    database = describe_replicated(definition, plan, balancer.read_dsn(definition.databases[0].name))
    return ReplicatedContainers(members, balancer, plan, database)
