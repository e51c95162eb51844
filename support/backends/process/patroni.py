"""A replicated database (``kind = "patroni"``) as processes: etcd members, Patroni-managed PostgreSQL nodes, HAProxy.

Each :class:`PatroniNode` is Debian's ``patroni`` (on the system Python, with its
etcd3 client) managing one PostgreSQL server in the run's directory, as the
unprivileged ``pg_user`` when the suite is root; the first node to take the
leader key in etcd bootstraps the cluster, the others clone it and stream from
it. Patroni starts its PostgreSQL detached (the postmaster is not below Patroni
in the process tree), so a node's kill, pause and stop reach the postmaster
through its ``postmaster.pid`` as well. :func:`make_replicated` makes the
members in dependency order: etcd, the nodes, the :class:`DatabaseBalancer`.

The links between the members go through one fault proxy process of the
cluster (:func:`cluster_links`), so a node can be cut off from the rest
(:class:`~support.faults.cluster.PrimaryCutOff`): each node's Patroni reaches
each etcd member through a proxy of its own (``(node, etcdN)``), and the other
nodes reach a node's PostgreSQL (streaming replication, its advertised
``connect_address``) and its Patroni REST API through a proxy in front of it
(``("replicas", node)``, ``("patroni-peers", node)``). HAProxy's checks and
routes and the suite's own probes go straight to each node.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from support.backends.process.etcd import EtcdMember, EtcdPlan, etcd_plans
from support.backends.process.haproxy import BalancedNode, DatabaseBalancer
from support.backends.process.pg_binaries import PgBinaries, RunAs
from support.backends.process.service import ProcessService
from support.backends.process.supervisor import ProcessSpec, SupervisedProcess
from support.backends.process.tools import debian_tool
from support.core.ports import LOOPBACK, free_port
from support.core.process_tree import descendants
from support.core.run_dirs import child_env
from support.proxy.client import ProxyServer
from support.proxy.link import Link
from support.stack.definitions import ServiceDefinition
from support.stack.readiness import check_listener
from support.stack.replicated import ReplicatedDatabase, ReplicatedNode, ReplicationOptions
from support.stack.services import Address, ServiceError

__all__ = [
    "PatroniNode",
    "NodeLinks",
    "Credentials",
    "ReplicatedPlan",
    "ReplicatedProcesses",
    "make_replicated",
    "plan_replicated",
    "describe_replicated",
    "patroni_config",
    "node_dsn",
    "cluster_links",
    "patroni_binary",
]


#: where setup.sh installs requirements-patroni.txt's Patroni (a virtualenv of Debian's Python, readable by
#: the unprivileged user); Debian 12's own 3.0.2 has a split brain after a long freeze (patroni/patroni#2689)
PATRONI_VENV = Path("/opt/chaos-suite/patroni")


def patroni_binary() -> str:
    """setup.sh's Patroni when it is there, else Debian's ``patroni`` (its script runs on the system Python);
    one line saying how to get it otherwise."""
    pinned = PATRONI_VENV / "bin" / "patroni"
    if os.access(pinned, os.X_OK):
        return str(pinned)
    return debian_tool("patroni", "Patroni", "patroni")


@dataclass(frozen=True)
class NodeLinks:
    """Where one node listens (``pg_port``, ``rest_port``: direct) and how the cluster reaches it through the fault
    proxy: ``etcd_hosts`` its Patroni's etcd members (``host:port`` each), ``pg_connect`` and ``rest_connect``
    the addresses it advertises to the other nodes (replication, Patroni's REST API)."""

    pg_port: int
    rest_port: int
    etcd_hosts: tuple[str, ...]
    pg_connect: str
    rest_connect: str


@dataclass(frozen=True)
class Credentials:
    """The cluster's PostgreSQL passwords: the superuser's (the suite's admin password), replication's, rewind's."""

    superuser: str
    replication: str
    rewind: str

    @classmethod
    def new(cls, superuser: str) -> Credentials:
        return cls(superuser, secrets.token_urlsafe(18), secrets.token_urlsafe(18))


def patroni_config(
    name: str,
    scope: str,
    links: NodeLinks,
    options: ReplicationOptions,
    credentials: Credentials,
    data_dir: str,
    bin_dir: str,
    pgpass: str,
) -> dict:
    """Node ``name``'s Patroni configuration (a dict; as JSON it is YAML), wherever the node runs: its PostgreSQL
    keeps its data in ``data_dir``, runs the binaries of ``bin_dir``, and Patroni writes ``pgpass`` for it."""
    return {
        "scope": scope,
        "namespace": "/chaos-suite/",
        "name": name,
        "restapi": {"listen": f"{LOOPBACK}:{links.rest_port}", "connect_address": links.rest_connect},
        # use_proxies: the hosts are the whole list (no discovery of the members' own URLs, past the proxy)
        "etcd3": {"hosts": list(links.etcd_hosts), "use_proxies": True},
        "bootstrap": {
            "dcs": {
                "ttl": options.ttl,
                "loop_wait": options.loop_wait,
                "retry_timeout": options.retry_timeout,
                "maximum_lag_on_failover": 1048576,
                "synchronous_mode": options.synchronous,
                "synchronous_mode_strict": options.synchronous_strict,
                "failsafe_mode": options.failsafe,
                "postgresql": {
                    "use_pg_rewind": True,
                    "use_slots": True,
                    "parameters": {
                        "max_connections": 100,
                        "shared_buffers": "32MB",
                        "wal_keep_size": "128MB",
                        "wal_log_hints": "on",
                    },
                },
            },
            "initdb": [{"encoding": "UTF8"}, {"auth": "scram-sha-256"}],
        },
        "postgresql": {
            "listen": f"{LOOPBACK}:{links.pg_port}",
            "connect_address": links.pg_connect,
            "data_dir": data_dir,
            "bin_dir": bin_dir,
            "pgpass": pgpass,
            "authentication": {
                "superuser": {"username": "postgres", "password": credentials.superuser},
                "replication": {"username": "replicator", "password": credentials.replication},
                "rewind": {"username": "rewinder", "password": credentials.rewind},
            },
            # TCP on loopback only; no Unix socket (its path length limit bites in deep run dirs)
            "parameters": {"unix_socket_directories": "", "log_line_prefix": "%m [%p] %a "},
            "pg_hba": [
                f"host all all {LOOPBACK}/32 scram-sha-256",
                f"host replication replicator {LOOPBACK}/32 scram-sha-256",
            ],
        },
    }


def node_dsn(pg_port: int, password: str, dbname: str = "postgres") -> str:
    """A superuser DSN straight to the node whose PostgreSQL listens on ``pg_port``."""
    return f"host={LOOPBACK} port={pg_port} dbname={dbname} user=postgres password={password}"


class PatroniNode(ProcessService):
    """One PostgreSQL server under Patroni: ready once Patroni's REST ``/health`` says its PostgreSQL runs."""

    def __init__(
        self,
        name: str,
        scope: str,
        run_dir: Path,
        bins: PgBinaries,
        run_as: RunAs,
        links: NodeLinks,
        options: ReplicationOptions,
        credentials: Credentials,
    ) -> None:
        self.home = run_dir / name
        self.data_dir = self.home / "data"
        self.pg_port, self.rest_port = links.pg_port, links.rest_port
        self.rest_url = f"http://{LOOPBACK}:{self.rest_port}"
        self._password = credentials.superuser
        self._run_as = run_as
        config = self.home / "patroni.yml"
        self.home.mkdir(mode=0o700)
        self.data_dir.mkdir(mode=0o700)
        run_as.chown(self.home)
        run_as.chown(self.data_dir)
        # JSON is YAML: no YAML writer needed
        made = patroni_config(
            name, scope, links, options, credentials, str(self.data_dir), str(bins.bindir), str(self.home / "pgpass")
        )
        config.write_text(json.dumps(made, indent=1))
        config.chmod(0o600)
        run_as.chown(config)
        spec = ProcessSpec(
            argv=[patroni_binary(), str(config)],
            env=child_env(run_dir),
            cwd=self.home,
            log_path=run_dir / f"{name}.log",
            popen_kwargs=run_as.popen_kwargs(),
        )
        super().__init__(name, self.pg_port, SupervisedProcess(name, spec))

    def dsn(self, dbname: str = "postgres") -> str:
        """A superuser DSN straight to this node's PostgreSQL."""
        return node_dsn(self.pg_port, self._password, dbname)

    def signal_server_process(self, pid: int, sig: int) -> None:
        """``sig`` to process ``pid`` of this node's PostgreSQL, as PostgreSQL names it (``pg_stat_activity``):
        a host PID here. Raises ProcessLookupError when it is gone."""
        os.kill(pid, sig)

    def postmaster_pids(self) -> list[int]:
        """The node's PostgreSQL (its postmaster, then every process below it); [] when none runs."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            return []
        return [pid, *descendants(pid)]

    @staticmethod
    def _signal(pids: list[int], sig: int) -> None:
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """``sig`` to Patroni and to its PostgreSQL at once; the restart policy brings Patroni back."""
        postgres = self.postmaster_pids()  # read first: once Patroni is gone nothing else names them
        self._process.kill(sig)
        self._signal(postgres, sig)

    def crash(self) -> None:
        """SIGKILL Patroni and its PostgreSQL, and keep the node down until :meth:`start` (a host that died)."""
        postgres = self.postmaster_pids()
        self._process.stop(0.0, signal.SIGKILL)
        self._signal(postgres, signal.SIGKILL)

    def stop(self, timeout: float = 10.0) -> None:
        """Patroni stops its PostgreSQL and releases the leader key; what is left after ``timeout`` s is killed."""
        self.resume()
        self._process.stop(timeout)
        self._signal(self.postmaster_pids(), signal.SIGKILL)

    def pause(self) -> None:
        """Freeze Patroni and its PostgreSQL (Patroni first: it cannot react to its frozen server)."""
        self._process.pause()
        self._signal(self.postmaster_pids(), signal.SIGSTOP)

    def resume(self) -> None:
        """Thaw its PostgreSQL (children first), then Patroni; harmless when nothing is frozen."""
        self._signal(list(reversed(self.postmaster_pids())), signal.SIGCONT)
        self._process.resume()

    def is_ready(self) -> bool:
        check_listener(self.rest_port, self.pid, self.name)
        return httpx.get(self.rest_url + "/health", timeout=1.0).status_code == 200

    def close(self) -> None:
        self.stop(10.0)
        self._process.close()


@dataclass
class ReplicatedProcesses:
    """A replicated database's processes: ``members`` in start order (etcd, nodes, balancer) and its description."""

    members: dict[str, ProcessService]
    balancer: DatabaseBalancer
    database: ReplicatedDatabase
    #: the cluster's proxied links (:func:`cluster_links`), keyed as a stack's links are
    links: dict[tuple[str, str], Link]
    #: stops the links' proxy process (idempotent)
    close_links: Callable[[], None]


def cluster_links(
    run_dir: Path, nodes: list[str], etcd: list[EtcdPlan]
) -> tuple[dict[str, NodeLinks], dict[tuple[str, str], Link], ProxyServer]:
    """One fault proxy process for the cluster and, on it, a link from each node to each etcd member and one in
    front of each node's PostgreSQL and REST API; each node's :class:`NodeLinks` (its direct ports chosen here)."""
    server = ProxyServer.start(run_dir)
    try:
        client = server.client()
        links: dict[tuple[str, str], Link] = {}

        def link(key: tuple[str, str], port: int) -> str:
            name, upstream = "-".join(key), Address(LOOPBACK, port)
            info = client.create_proxy(name, upstream)
            links[key] = Link(name, server, client, info.address, upstream)
            return f"{info.address.host}:{info.address.port}"

        made = {}
        for node in nodes:
            pg_port, rest_port = free_port(), free_port()
            hosts = tuple(link((node, member.name), member.address.port) for member in etcd)
            pg_connect, rest_connect = link(("replicas", node), pg_port), link(("patroni-peers", node), rest_port)
            made[node] = NodeLinks(pg_port, rest_port, hosts, pg_connect, rest_connect)
    except BaseException:
        server.stop()
        raise
    return made, links, server


@dataclass
class ReplicatedPlan:
    """What a replicated database is made of before any member exists, whichever backend runs it: its Patroni
    ``scope``, ``options``, ``credentials``, the ``etcd`` members, each node's :class:`NodeLinks` (by name), and the
    cluster's proxied ``links`` on the fault proxy process ``proxy`` (started)."""

    name: str
    scope: str
    options: ReplicationOptions
    credentials: Credentials
    etcd: list[EtcdPlan]
    nodes: dict[str, NodeLinks]
    links: dict[tuple[str, str], Link]
    proxy: ProxyServer

    def balanced_nodes(self) -> list[BalancedNode]:
        """The nodes as the database's HAProxy checks and routes them (direct ports)."""
        return [BalancedNode(name, made.pg_port, made.rest_port) for name, made in self.nodes.items()]


def plan_replicated(definition: ServiceDefinition, run_dir: Path, admin_password: str) -> ReplicatedPlan:
    """The plan of replicated database ``definition``: members ``etcd1..`` and nodes ``NAME1..`` on free loopback
    ports, and the cluster's links' proxy, started here (the caller stops it: ``plan.proxy.stop``)."""
    options = definition.replication or ReplicationOptions()
    name = definition.name
    etcd = etcd_plans([f"etcd{i}" for i in range(1, options.etcd_members + 1)], run_dir.name)
    node_links, links, proxy = cluster_links(run_dir, [f"{name}{i}" for i in range(1, options.nodes + 1)], etcd)
    return ReplicatedPlan(
        name, f"{name}-{run_dir.name}", options, Credentials.new(admin_password), etcd, node_links, links, proxy
    )


def describe_replicated(definition: ServiceDefinition, plan: ReplicatedPlan, read_dsn: str) -> ReplicatedDatabase:
    """What the cluster controller is told of the running database of ``plan`` (``read_dsn``: HAProxy's replica
    frontend)."""
    database = definition.databases[0].name
    return ReplicatedDatabase(
        name=plan.name,
        options=plan.options,
        nodes=tuple(
            ReplicatedNode(
                node,
                f"http://{LOOPBACK}:{made.rest_port}",
                node_dsn(made.pg_port, plan.credentials.superuser, database),
            )
            for node, made in plan.nodes.items()
        ),
        etcd=tuple(member.name for member in plan.etcd),
        etcd_urls=tuple(member.client_url for member in plan.etcd),
        database=database,
        read_dsn=read_dsn,
    )


def make_replicated(
    definition: ServiceDefinition, bins: PgBinaries, run_as: RunAs, run_dir: Path, admin_password: str
) -> ReplicatedProcesses:
    """The processes of replicated database ``definition`` (not started), named ``etcd1..``, ``NAME1..`` and ``NAME``.

    Only the links' proxy is started here; the caller starts the members in order and closes them and the links.
    """
    reach = os.access(run_dir, os.X_OK) if run_as.uid is None else _enterable(run_dir, run_as)
    if not reach:
        raise ServiceError(
            f"Patroni runs as {run_as.user} and cannot enter {run_dir}: set work_root to a directory every "
            "user can enter (the default is under /tmp)"
        )
    plan = plan_replicated(definition, run_dir, admin_password)
    try:
        etcd = [EtcdMember(member, run_dir) for member in plan.etcd]
        nodes = [
            PatroniNode(node, plan.scope, run_dir, bins, run_as, made, plan.options, plan.credentials)
            for node, made in plan.nodes.items()
        ]
    except BaseException:
        plan.proxy.stop()
        raise
    balancer = DatabaseBalancer(plan.name, run_dir, admin_password, plan.balanced_nodes(), plan.options.check_interval)
    database = describe_replicated(definition, plan, balancer.read_dsn(definition.databases[0].name))
    members: dict[str, ProcessService] = {m.name: m for m in etcd}
    members.update({node.name: node for node in nodes})
    members[plan.name] = balancer
    return ReplicatedProcesses(members, balancer, database, plan.links, plan.proxy.stop)


def _enterable(path: Path, run_as: RunAs) -> bool:
    return subprocess.run(["test", "-x", str(path)], timeout=10, **run_as.popen_kwargs()).returncode == 0
