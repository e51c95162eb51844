"""An etcd member as a process: the consensus store a replicated database's Patroni nodes elect their leader in.

:class:`EtcdMember` listens for clients and peers on two free loopback ports,
keeps its data in the run's directory, and is up once it accepts connections
on its client port: etcd answers nothing before the members have a quorum, and
whether they have one is the cluster's question (:mod:`support.cluster`), not one
member's, so that a member can be started while the others are still down.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from support.backends.process.service import ProcessService
from support.backends.process.supervisor import ProcessSpec, SupervisedProcess
from support.backends.process.tools import debian_tool
from support.core.ports import LOOPBACK, free_port
from support.core.run_dirs import child_env
from support.stack.readiness import check_listener, tcp_answers
from support.stack.services import Address

__all__ = ["EtcdMember", "EtcdPlan", "etcd_binary", "etcd_cluster", "etcd_plans"]


def etcd_binary() -> str:
    """The ``etcd`` server on the PATH; one line saying how to get it otherwise."""
    return debian_tool("etcd", "etcd", "etcd-server")


@dataclass(frozen=True)
class EtcdPlan:
    """One member of an etcd cluster, wherever it runs: its name, its loopback ports, ``peers`` every member's
    ``(name, peer port)`` (this one's included: etcd's ``--initial-cluster``) and the cluster's ``token``."""

    name: str
    client_port: int
    peer_port: int
    peers: tuple[tuple[str, int], ...]
    token: str

    @property
    def address(self) -> Address:
        return Address(LOOPBACK, self.client_port)

    @property
    def client_url(self) -> str:
        return f"http://{LOOPBACK}:{self.client_port}"

    def argv(self, binary: str, data_dir: str) -> list[str]:
        """The member's command line, keeping its data in ``data_dir``."""
        peer_url = f"http://{LOOPBACK}:{self.peer_port}"
        return [
            binary,
            "--name", self.name,
            "--data-dir", data_dir,
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", peer_url,
            "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", ",".join(f"{peer}=http://{LOOPBACK}:{port}" for peer, port in self.peers),
            "--initial-cluster-state", "new",
            "--initial-cluster-token", self.token,
            # a loopback cluster on a busy 2-core machine: quick elections, but not so quick they flap
            "--heartbeat-interval", "100",
            "--election-timeout", "1000",
            "--log-level", "warn",
        ]  # fmt: skip


def etcd_plans(names: list[str], token: str) -> list[EtcdPlan]:
    """Members ``names`` of one etcd cluster called ``token``, each on two free loopback ports."""
    ports = {name: (free_port(), free_port()) for name in names}
    peers = tuple((name, peer) for name, (_, peer) in ports.items())
    return [EtcdPlan(name, client, peer, peers, token) for name, (client, peer) in ports.items()]


class EtcdMember(ProcessService):
    """One member of an etcd cluster as a process (its data in the run's directory); ``client_url`` is where
    Patroni and the suite reach it."""

    def __init__(self, plan: EtcdPlan, run_dir: Path):
        self.client_url = plan.client_url
        self.data_dir = run_dir / f"{plan.name}-data"
        spec = ProcessSpec(
            argv=plan.argv(etcd_binary(), str(self.data_dir)),
            env=child_env(run_dir),
            cwd=run_dir,
            log_path=run_dir / f"{plan.name}.log",
        )
        super().__init__(plan.name, plan.client_port, SupervisedProcess(plan.name, spec))

    def is_ready(self) -> bool:
        check_listener(self._port, self.pid, self.name)
        return tcp_answers(LOOPBACK, self._port)


def etcd_cluster(names: list[str], run_dir: Path) -> list[EtcdMember]:
    """Members ``names`` of one etcd cluster, each on two free loopback ports (not started)."""
    return [EtcdMember(plan, run_dir) for plan in etcd_plans(names, run_dir.name)]
