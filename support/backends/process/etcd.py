"""An etcd member as a process: the consensus store a replicated database's Patroni nodes elect their leader in.

:class:`EtcdMember` listens for clients and peers on two free loopback ports,
keeps its data in the run's directory, and is up once it accepts connections
on its client port: etcd answers nothing before the members have a quorum, and
whether they have one is the cluster's question (:mod:`support.cluster`), not one
member's, so that a member can be started while the others are still down.
"""

from __future__ import annotations

from pathlib import Path

from support.backends.process.service import ProcessService
from support.backends.process.supervisor import ProcessSpec, SupervisedProcess
from support.backends.process.tools import debian_tool
from support.core.ports import LOOPBACK, free_port
from support.core.run_dirs import child_env
from support.stack.readiness import check_listener, tcp_answers

__all__ = ["EtcdMember", "etcd_binary", "etcd_cluster"]


def etcd_binary() -> str:
    """The ``etcd`` server on the PATH; one line saying how to get it otherwise."""
    return debian_tool("etcd", "etcd", "etcd-server")


class EtcdMember(ProcessService):
    """One member of an etcd cluster; ``client_url`` is where Patroni and the suite reach it.

    ``peers`` is every member's ``(name, peer port)``, this one's included (etcd's ``--initial-cluster``).
    """

    def __init__(self, name: str, run_dir: Path, client_port: int, peer_port: int, peers: list[tuple[str, int]]):
        self.client_url = f"http://{LOOPBACK}:{client_port}"
        peer_url = f"http://{LOOPBACK}:{peer_port}"
        self.data_dir = run_dir / f"{name}-data"
        argv = [
            etcd_binary(),
            "--name", name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", peer_url,
            "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", ",".join(f"{peer}=http://{LOOPBACK}:{port}" for peer, port in peers),
            "--initial-cluster-state", "new",
            "--initial-cluster-token", run_dir.name,
            # a loopback cluster on a busy 2-core machine: quick elections, but not so quick they flap
            "--heartbeat-interval", "100",
            "--election-timeout", "1000",
            "--log-level", "warn",
        ]  # fmt: skip
        spec = ProcessSpec(argv=argv, env=child_env(run_dir), cwd=run_dir, log_path=run_dir / f"{name}.log")
        super().__init__(name, client_port, SupervisedProcess(name, spec))

    def is_ready(self) -> bool:
        check_listener(self._port, self.pid, self.name)
        return tcp_answers(LOOPBACK, self._port)


def etcd_cluster(names: list[str], run_dir: Path) -> list[EtcdMember]:
    """Members ``names`` of one etcd cluster, each on two free loopback ports (not started)."""
    ports = {name: (free_port(), free_port()) for name in names}
    peers = [(name, peer) for name, (_, peer) in ports.items()]
    return [EtcdMember(name, run_dir, client, peer, peers) for name, (client, peer) in ports.items()]
