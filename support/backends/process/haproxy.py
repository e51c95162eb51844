"""HAProxy in front of a replicated database: a write frontend to the current primary, a read frontend to replicas.

The suite writes its configuration (TCP mode): each node is a server whose
health is Patroni's REST answer on the node (``GET /primary`` answers 200 on the
leader only, ``GET /replica`` on a running replica), checked every
``check_interval`` s; a server marked down has its sessions shut, so clients of a
demoted primary reconnect to the new one. Clients of the database service reach
the write frontend; the suite's own SQL reaches it directly.
"""

from __future__ import annotations

import csv
import socket
from pathlib import Path

from support.backends.process.service import ProcessService
from support.backends.process.supervisor import ProcessSpec, SupervisedProcess
from support.backends.process.tools import debian_tool
from support.core.ports import LOOPBACK, free_port
from support.core.run_dirs import child_env
from support.stack.database import connect
from support.stack.readiness import check_listener

__all__ = ["DatabaseBalancer", "BalancerFrontends", "BalancedNode", "haproxy_binary", "haproxy_config"]


def haproxy_binary() -> str:
    """The ``haproxy`` binary; one line saying how to get it otherwise."""
    return debian_tool("haproxy", "HAProxy", "haproxy")


class BalancedNode:
    """A node as HAProxy sees it: its PostgreSQL port and its Patroni REST port."""

    def __init__(self, name: str, pg_port: int, rest_port: int) -> None:
        self.name, self.pg_port, self.rest_port = name, pg_port, rest_port


def haproxy_config(
    write_port: int, read_port: int, nodes: list[BalancedNode], check_interval: float, stats_port: int
) -> str:
    """The configuration: ``write_port`` to the node whose ``/primary`` is 200, ``read_port`` to ``/replica`` ones;
    ``stats_port`` answers ``show stat`` (what the balancer thinks of each node; TCP, since a Unix socket's path
    in a deep run directory passes its length limit)."""
    interval = f"{max(int(check_interval * 1000), 50)}ms"
    lines = [
        "global",
        "    maxconn 2000",
        f"    stats socket ipv4@{LOOPBACK}:{stats_port} level user",
        "defaults",
        "    mode tcp",
        "    timeout connect 2s",
        "    timeout client 30m",
        "    timeout server 30m",
        "    timeout check 1s",
        f"    default-server inter {interval} fastinter {interval} downinter {interval} fall 2 rise 1 "
        "on-marked-down shutdown-sessions",
    ]
    for frontend, port, check in (("primary", write_port, "/primary"), ("replicas", read_port, "/replica")):
        lines += [
            f"frontend {frontend}",
            f"    bind {LOOPBACK}:{port}",
            f"    default_backend {frontend}_nodes",
            f"backend {frontend}_nodes",
            f"    option httpchk GET {check}",
            "    http-check expect status 200",
        ]
        if frontend == "replicas":
            lines.append("    balance roundrobin")
        lines += [f"    server {n.name} {LOOPBACK}:{n.pg_port} check port {n.rest_port}" for n in nodes]
    return "\n".join(lines) + "\n"


class BalancerFrontends:
    """What the HAProxy of a replicated database offers, wherever it runs (a process, a container): its write
    frontend (``write_port``: the current primary), its read frontend (``read_port``) and its stats (``stats_port``),
    all on 127.0.0.1, and the superuser ``password`` of the nodes behind it."""

    password: str
    write_port: int
    read_port: int
    stats_port: int

    def plan_frontends(self, password: str) -> None:
        """Choose the three ports (free loopback ones) and keep ``password``."""
        self.password = password
        self.write_port, self.read_port, self.stats_port = free_port(), free_port(), free_port()

    def config(self, nodes: list[BalancedNode], check_interval: float) -> str:
        """HAProxy's configuration for these frontends over ``nodes`` (:func:`haproxy_config`)."""
        return haproxy_config(self.write_port, self.read_port, nodes, check_interval, self.stats_port)

    def dsn(self, dbname: str = "postgres", user: str = "postgres", password: str | None = None) -> str:
        """A libpq DSN through the write frontend (the current primary)."""
        return (
            f"host={LOOPBACK} port={self.write_port} dbname={dbname} user={user} password={password or self.password}"
        )

    def read_dsn(self, dbname: str = "postgres") -> str:
        """A superuser DSN through the read frontend (a replica)."""
        return f"host={LOOPBACK} port={self.read_port} dbname={dbname} user=postgres password={self.password}"

    def servers_up(self) -> dict[str, list[str]]:
        """The nodes HAProxy has up, by frontend (``primary``, ``replicas``), from its stats socket."""
        with socket.create_connection((LOOPBACK, self.stats_port), timeout=1.0) as sock:
            sock.sendall(b"show stat\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        up: dict[str, list[str]] = {"primary": [], "replicas": []}
        for row in csv.reader(data.decode().lstrip("# ").splitlines()):
            server = len(row) > 17 and row[0].endswith("_nodes") and row[1] not in ("BACKEND", "FRONTEND")
            if server and row[17].startswith("UP"):
                up[row[0].removesuffix("_nodes")].append(row[1])
        return up

    def routes_to_a_primary(self) -> bool:
        """One node up behind the write frontend (HAProxy starts with every server up until its first checks), and
        it answers as a primary: the balancer's readiness, once its listener is known to be its own."""
        if len(self.servers_up()["primary"]) != 1:
            return False
        with (
            connect(self.dsn(), 2.0, application_name="chaos-suite-probe", wait_for_slot=False) as conn,
            conn.cursor() as cur,
        ):
            cur.execute("SELECT NOT pg_is_in_recovery()")
            row = cur.fetchone()
        return bool(row and row[0])


class DatabaseBalancer(BalancerFrontends, ProcessService):
    """The HAProxy of a replicated database as a process, named as the database service; ready once a primary
    answers through it."""

    def __init__(self, name: str, run_dir: Path, password: str, nodes: list[BalancedNode], check_interval: float):
        self.plan_frontends(password)
        config = run_dir / f"{name}-haproxy.cfg"
        config.write_text(self.config(nodes, check_interval))
        spec = ProcessSpec(
            argv=[haproxy_binary(), "-db", "-f", str(config)],
            env=child_env(run_dir),
            cwd=run_dir,
            log_path=run_dir / f"{name}.log",
        )
        super().__init__(name, self.write_port, SupervisedProcess(name, spec))

    def is_ready(self) -> bool:
        check_listener(self._port, self.pid, self.name)
        return self.routes_to_a_primary()
