"""The primary cut off from the cluster (features/ha/partition.feature): the cut is what it says, and the scenario can fail.

Fast tests: which links the partition cuts and that its heal restores each (fake proxy
clients), the cluster's links on a real fault proxy, and the attribution of an
acknowledged write to the cut-off primary. One slow test on a real asynchronous cluster:
the synchronous scenario fails there, naming the writes the cut-off primary acknowledged
alone, and the scenario that documents the risk passes. (The synchronous scenario passing on
the reference stack is tests/test_ha.py's run of every @ha scenario.)
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import pytest

from support.backends.process.patroni import cluster_links
from support.cluster.watch import Band, other_writer_at
from support.core.ports import LOOPBACK
from support.faults.base import FaultHadNoEffect
from support.faults.cluster import PrimaryCutOff
from support.stack.services import Address
from tests.suite_runner import REPO, leftovers, run_behave
from tests.test_ha import FEATURES, OPTIONS, needs_tools


@dataclass
class _FakeProxyClient:
    enabled: dict[str, bool] = field(default_factory=dict)

    def set_enabled(self, name: str, enabled: bool) -> None:
        self.enabled[name] = enabled


def _links(client: _FakeProxyClient) -> dict[tuple[str, str], Any]:
    keys = [("postgres1", "etcd1"), ("postgres2", "etcd1"), ("replicas", "postgres1"), ("replicas", "postgres2")]
    keys += [("patroni-peers", "postgres1"), ("api1", "postgres")]
    return {key: SimpleNamespace(name="-".join(key), client=client) for key in keys}


def test_the_cut_disables_every_link_of_the_primary_and_its_heal_enables_them_again():
    client = _FakeProxyClient()
    controller = cast(Any, SimpleNamespace(primary=lambda timeout: "postgres1"))
    fault = PrimaryCutOff(controller, 5.0, _links(client))
    fault.inject()
    assert fault.target == "postgres1" and fault.primary_before == "postgres1"
    assert client.enabled == {"postgres1-etcd1": False, "replicas-postgres1": False, "patroni-peers-postgres1": False}
    fault.heal()
    fault.heal()  # idempotent
    assert set(client.enabled.values()) == {True} and len(client.enabled) == 3


def test_the_heal_enables_every_link_even_when_one_call_fails():
    class Flaky(_FakeProxyClient):
        def set_enabled(self, name: str, enabled: bool) -> None:
            if enabled and name == "postgres1-etcd1":
                raise RuntimeError("fault proxy did not answer")
            super().set_enabled(name, enabled)

    client = Flaky()
    fault = PrimaryCutOff(cast(Any, SimpleNamespace(primary=lambda timeout: "postgres1")), 5.0, _links(client))
    fault.inject()
    with pytest.raises(RuntimeError, match="did not answer"):
        fault.heal()
    assert client.enabled == {"postgres1-etcd1": False, "replicas-postgres1": True, "patroni-peers-postgres1": True}


def test_a_primary_without_proxied_links_is_refused_in_one_line():
    controller = cast(Any, SimpleNamespace(primary=lambda timeout: "postgres9"))
    with pytest.raises(FaultHadNoEffect, match="postgres9 has no proxied link to cut"):
        PrimaryCutOff(controller, 5.0, _links(_FakeProxyClient())).inject()


def test_a_write_is_the_cut_off_primary_s_alone_when_no_other_node_was_seen_writing():
    bands = [Band("postgres1", 0.0, 3.0), Band("postgres2", 12.0, 30.0)]
    assert other_writer_at(bands, "postgres1", 2.0, 0.25) is None
    assert other_writer_at(bands, "postgres1", 11.9, 0.25) == "postgres2"  # within one sampling interval
    assert other_writer_at(bands, "postgres1", 20.0, 0.25) == "postgres2"


def _echo_server() -> tuple[socket.socket, int]:
    server = socket.create_server((LOOPBACK, 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(conn.recv(64))

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def test_the_cluster_links_go_through_one_fault_proxy_and_can_be_cut(tmp_path):
    upstream, port = _echo_server()
    etcd = [cast(Any, SimpleNamespace(name="etcd1", address=Address(LOOPBACK, port)))]
    made, links, server = cluster_links(tmp_path, ["db1", "db2"], etcd)
    try:
        assert set(links) == {
            ("db1", "etcd1"), ("db2", "etcd1"), ("replicas", "db1"), ("replicas", "db2"),
            ("patroni-peers", "db1"), ("patroni-peers", "db2"),
        }  # fmt: skip
        assert made["db1"].etcd_hosts == (f"{LOOPBACK}:{links[('db1', 'etcd1')].address.port}",)
        assert made["db1"].pg_connect.endswith(f":{links[('replicas', 'db1')].address.port}")
        assert links[("replicas", "db1")].upstream.port == made["db1"].pg_port  # the proxy fronts the node
        link = links[("db1", "etcd1")]
        with socket.create_connection((LOOPBACK, link.address.port), timeout=5) as conn:
            conn.sendall(b"ping")
            assert conn.recv(64) == b"ping"
        link.client.set_enabled(link.name, False)
        with pytest.raises(OSError), socket.create_connection((LOOPBACK, link.address.port), timeout=5) as conn:
            conn.sendall(b"ping")
            if not conn.recv(64):
                raise ConnectionResetError("closed by the disabled link")
        link.heal()
        assert not link.client.proxy(link.name).toxics and link.client.proxy(link.name).enabled
    finally:
        server.stop()
        upstream.close()
    assert not server.running


@needs_tools
def test_asynchronous_replication_loses_the_cut_off_primary_s_writes_and_each_is_reported(tmp_path):
    # one cluster for both: the synchronous scenario fails on it, the scenario that documents the risk passes
    stack = f"stack_file={REPO / 'stack' / 'ha' / 'async.toml'}"
    feature = f"{FEATURES}/partition.feature"
    run = run_behave(tmp_path / "work", "-D", stack, *OPTIONS, "--tags=@partition", feature)
    assert run.returncode != 0, run.output[-3000:]
    assert "1 scenario passed, 1 failed" in run.output, run.output[-3000:]
    found = re.search(
        r"\d+ of the \d+ writes acknowledged while (postgres\d) was cut off .* acknowledged by \1 alone", run.output
    )
    assert found, run.output[-3000:]
    assert leftovers(run) == []
