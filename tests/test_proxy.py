"""The fault proxy on real sockets: byte-exact forwarding, each toxic's effect measured, heal restores speed."""

import asyncio
import hashlib
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from support.core.waiting import wait_until
from support.proxy.client import ProxyError, ProxyServer
from support.proxy.control import FaultProxyServer


class EchoServer:
    """A threaded TCP echo server on 127.0.0.1; on EOF from a client it closes that connection."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=512)
        self.port = self.sock.getsockname()[1]
        self.connections = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        try:
            while data := conn.recv(262144):
                conn.sendall(data)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.sock.close()
        for conn in self.connections:
            conn.close()


try:
    import uvloop  # noqa: F401

    LOOPS = ["asyncio", "uvloop"]
except ImportError:  # the server then runs on asyncio only, as it would in a run
    LOOPS = ["asyncio"]


@pytest.fixture(scope="module", params=LOOPS)
def server(tmp_path_factory, request):
    proxy_server = ProxyServer.start(tmp_path_factory.mktemp("proxy"), loop=request.param)
    assert proxy_server.loop == request.param
    yield proxy_server
    proxy_server.stop()
    assert not pid_alive(proxy_server.pid)


@pytest.fixture(scope="module")
def client(server):
    with server.client() as proxy_client:
        yield proxy_client


@pytest.fixture(scope="module")
def echo():
    echo_server = EchoServer()
    yield echo_server
    echo_server.close()


@pytest.fixture
def proxy(client, echo, request):
    name = request.node.name.replace("[", "_").replace("]", "")
    info = client.create_proxy(name, ("127.0.0.1", echo.port))
    yield info
    client.delete_proxy(name)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    parts, got = [], 0
    while got < size:
        data = sock.recv(min(262144, size - got))
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def how_it_ends(sock: socket.socket) -> str:
    """Read until the peer closes: ``closed`` (FIN) or ``reset`` (RST); a socket timeout propagates."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return "reset"
    return "closed"


def connect_and_read(port: int) -> str:
    """Like :func:`how_it_ends` for a new connection; a reset may come before ``connect`` returns."""
    try:
        sock = connect(port)
    except ConnectionResetError:
        return "reset"
    with sock:
        return how_it_ends(sock)


def round_trip_ms(sock: socket.socket, payload: bytes = b"ping") -> float:
    started = time.monotonic()
    sock.sendall(payload)
    assert recv_exactly(sock, len(payload)) == payload
    return (time.monotonic() - started) * 1000.0


def echoes(sock: socket.socket, payload: bytes = b"ping") -> bool:
    """The payload comes back within the socket's timeout (the deadline): the connection carries data.

    Where a test only needs the link up (not refused, cut or held), this is the check; how fast a toxic
    makes it is judged against the same round trip measured without the toxic, side by side.
    """
    sock.sendall(payload)
    return recv_exactly(sock, len(payload)) == payload


def echo_through(sock: socket.socket, blob: bytes) -> bytes:
    """Send ``blob`` from a thread while reading the echo here (both directions at once)."""
    sender = threading.Thread(target=sock.sendall, args=(blob,))
    sender.start()
    received = recv_exactly(sock, len(blob))
    sender.join(5)
    return received


# -- forwarding ---------------------------------------------------------------------------------------------------


def test_forwards_megabytes_of_random_bytes_exactly_both_ways(proxy):
    blob = os.urandom(4 * 1024 * 1024)
    with connect(proxy.port) as sock:
        received = echo_through(sock, blob)
    assert len(received) == len(blob)
    assert hashlib.sha256(received).digest() == hashlib.sha256(blob).digest()


def test_forwards_many_concurrent_connections(proxy):
    def one(index: int) -> bool:
        blob = os.urandom(32 * 1024 + index)
        with connect(proxy.port) as sock:
            return echo_through(sock, blob) == blob

    with ThreadPoolExecutor(max_workers=100) as pool:
        results = list(pool.map(one, range(200)))
    assert all(results) and len(results) == 200


def test_half_close_is_passed_on(proxy):
    with connect(proxy.port) as sock:
        sock.sendall(b"last words")
        sock.shutdown(socket.SHUT_WR)
        assert recv_exactly(sock, 100) == b"last words"  # the echo server saw EOF and closed: so do we


# -- toxics --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", ["downstream", "upstream"])
def test_latency_adds_the_configured_delay(client, proxy, stream):
    with connect(proxy.port) as sock:
        baseline = statistics.median(round_trip_ms(sock) for _ in range(5))
        client.add_toxic(proxy.name, "latency", stream=stream, latency=100)
        delayed = statistics.median(round_trip_ms(sock) for _ in range(5))
    assert abs((delayed - baseline) - 100) <= 15, f"added {delayed - baseline:.1f} ms, configured 100 ms"


def test_jitter_spreads_the_delay(client, proxy):
    client.add_toxic(proxy.name, "latency", latency=60, jitter=40)
    with connect(proxy.port) as sock:
        samples = sorted(round_trip_ms(sock) for _ in range(20))
    # 60 +/- 40 ms, uniform: never under 20 ms; the 18th of 20 may be late by a busy machine, not by 15 ms more
    assert samples[0] >= 20 - 1 and samples[17] <= 100 + 15, samples
    assert samples[17] - samples[2] >= 30, f"jitter 40 ms spread the delays over only {samples}"
    assert statistics.pstdev(samples) >= 8, samples


def test_bandwidth_limits_throughput(client, proxy):
    rate_kb_s = 2000
    client.add_toxic(proxy.name, "bandwidth", rate=rate_kb_s)
    blob = os.urandom(1_500_000)
    with connect(proxy.port) as sock:
        started = time.monotonic()
        received = echo_through(sock, blob)
        elapsed = time.monotonic() - started
    assert received == blob
    measured = len(blob) / 1000 / elapsed
    assert abs(measured - rate_kb_s) <= 0.2 * rate_kb_s, f"{measured:.0f} KB/s through a {rate_kb_s} KB/s toxic"


def test_timeout_zero_holds_data_until_the_toxic_is_removed(client, proxy):
    with connect(proxy.port) as sock:
        client.add_toxic(proxy.name, "timeout", name="cut", timeout=0)
        sock.sendall(b"are you there")
        sock.settimeout(0.5)
        with pytest.raises(socket.timeout):
            sock.recv(100)
        client.remove_toxic(proxy.name, "cut")
        sock.settimeout(2.0)
        started = time.monotonic()
        assert recv_exactly(sock, 13) == b"are you there"
        assert time.monotonic() - started < 0.2
        assert echoes(sock)


def test_timeout_closes_the_connection_after_its_delay(client, proxy):
    with connect(proxy.port) as sock:
        assert echoes(sock)  # the connection is up before the toxic meets it
        started = time.monotonic()
        client.add_toxic(proxy.name, "timeout", timeout=300)
        sock.sendall(b"held")
        assert how_it_ends(sock) == "closed"  # without the held data
        assert 0.25 <= time.monotonic() - started <= 1.0


def test_reset_peer_resets_the_connection(client, proxy):
    with connect(proxy.port) as sock:
        assert echoes(sock)  # the connection is up before the toxic meets it
        started = time.monotonic()
        client.add_toxic(proxy.name, "reset_peer", timeout=200)
        assert how_it_ends(sock) == "reset"
        assert 0.15 <= time.monotonic() - started <= 1.0
    with connect(proxy.port) as fresh:  # a new connection meets the toxic too
        assert how_it_ends(fresh) == "reset"


def test_limit_data_closes_after_that_many_bytes(client, proxy):
    client.add_toxic(proxy.name, "limit_data", bytes=1000)
    with connect(proxy.port) as sock:
        sock.sendall(os.urandom(600))
        assert len(recv_exactly(sock, 600)) == 600
        sock.sendall(b"x" * 5000)
        rest = recv_exactly(sock, 5000)
    assert rest == b"x" * 400


def test_slow_close_delays_the_close(client, proxy):
    with connect(proxy.port) as sock:
        sock.shutdown(socket.SHUT_WR)
        started = time.monotonic()
        assert sock.recv(10) == b""
        prompt = time.monotonic() - started
    client.add_toxic(proxy.name, "slow_close", delay=300)
    with connect(proxy.port) as sock:
        sock.shutdown(socket.SHUT_WR)
        started = time.monotonic()
        assert sock.recv(10) == b""
        delayed = time.monotonic() - started
    assert prompt < 0.1 and 0.28 <= delayed <= 0.5, (prompt, delayed)


def test_toxicity_zero_leaves_connections_alone(client, proxy):
    client.add_toxic(proxy.name, "latency", toxicity=0.0, latency=500)
    with connect(proxy.port) as sock:
        untouched = statistics.median(round_trip_ms(sock) for _ in range(3))
        client.update_toxic(proxy.name, "latency_downstream", toxicity=1.0)  # rolled again: now it applies
        delayed = round_trip_ms(sock)
    # side by side on one connection: at toxicity 0 the round trip lacks the 500 ms that toxicity 1 adds
    assert delayed - untouched >= 500 * 0.75, f"toxicity 0: {untouched:.1f} ms, toxicity 1: {delayed:.1f} ms"


def test_removing_toxics_restores_full_speed_on_existing_connections(client, proxy):
    with connect(proxy.port) as sock:
        client.add_toxic(proxy.name, "latency", latency=2000)
        started = time.monotonic()
        sock.sendall(b"slow")
        sock.settimeout(0.2)
        with pytest.raises(socket.timeout):
            sock.recv(10)
        client.remove_toxic(proxy.name, "latency_downstream")
        sock.settimeout(5)
        assert recv_exactly(sock, 4) == b"slow"
        assert time.monotonic() - started < 0.5  # not the 2 s the toxic had promised

        client.add_toxic(proxy.name, "bandwidth", rate=50)
        sender = threading.Thread(target=sock.sendall, args=(b"y" * 1_000_000,))
        sender.start()
        first = sock.recv(65536)
        client.remove_toxic(proxy.name, "bandwidth_downstream")
        started = time.monotonic()
        rest = recv_exactly(sock, 1_000_000 - len(first))
        sender.join(5)
        assert first + rest == b"y" * 1_000_000
        assert time.monotonic() - started < 0.5  # 50 KB/s would need 20 s

        blob = os.urandom(8 * 1024 * 1024)
        started = time.monotonic()
        assert echo_through(sock, blob) == blob
        mb_s = len(blob) / 1e6 / (time.monotonic() - started)
    assert mb_s > 40, f"only {mb_s:.0f} MB/s after the toxics were removed"


def test_a_disabled_link_refuses_new_connections_and_cuts_existing_ones(client, proxy):
    existing = connect(proxy.port)
    assert echoes(existing)
    info = client.set_enabled(proxy.name, False)
    assert info.enabled is False and info.port == proxy.port
    with pytest.raises(ConnectionRefusedError):
        connect(proxy.port, timeout=1.0)
    existing.settimeout(1.0)
    with existing:
        assert how_it_ends(existing) in ("closed", "reset")
    assert client.set_enabled(proxy.name, True).port == proxy.port
    with connect(proxy.port) as sock:
        assert echoes(sock)


def test_an_unreachable_upstream_closes_the_client_at_once(client):
    dead = socket.create_server(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()
    info = client.create_proxy("to_nowhere", f"127.0.0.1:{dead_port}")
    try:
        started = time.monotonic()
        assert connect_and_read(info.port) == "reset"
        assert time.monotonic() - started < 0.5
    finally:
        client.delete_proxy("to_nowhere")


# -- control API --------------------------------------------------------------------------------------------------


def test_reset_enables_every_proxy_and_removes_every_toxic(client, proxy):
    client.add_toxic(proxy.name, "latency", latency=1000)
    with connect(proxy.port) as sock:
        delayed = round_trip_ms(sock)
    client.set_enabled(proxy.name, False)
    client.reset()
    after = client.proxy(proxy.name)
    assert after.enabled is True and after.toxics == ()
    with connect(proxy.port) as sock:
        healed = round_trip_ms(sock)
    # side by side: the round trip after the reset lacks the 1000 ms the toxic added before it
    assert delayed - healed >= 1000 * 0.75, f"with the toxic {delayed:.1f} ms, after the reset {healed:.1f} ms"


def test_toxics_are_listed_updated_and_named_as_toxiproxy_does(client, proxy):
    toxic = client.add_toxic(proxy.name, "latency", stream="upstream", latency=10)
    assert (toxic.name, toxic.stream, toxic.toxicity, toxic.attributes) == (
        "latency_upstream",
        "upstream",
        1.0,
        {"latency": 10, "jitter": 0},
    )
    updated = client.update_toxic(proxy.name, "latency_upstream", jitter=5)
    assert updated.attributes == {"latency": 10, "jitter": 5}
    assert [t.name for t in client.toxics(proxy.name)] == ["latency_upstream"]
    assert proxy.name in client.proxies()


@pytest.mark.parametrize(
    "call, status, message",
    [
        (lambda c, p: c.proxy("nope"), 404, "no proxy named 'nope'"),
        (lambda c, p: c.add_toxic("nope", "latency"), 404, "no proxy named 'nope'"),
        (
            lambda c, p: c.add_toxic(p.name, "lag"),
            400,
            "unknown toxic type 'lag'; valid types: latency, bandwidth, timeout, reset_peer, slow_close, limit_data",
        ),
        (lambda c, p: c.add_toxic(p.name, "latency", delay=3), 400, "unknown attribute 'delay' for a latency toxic"),
        (lambda c, p: c.add_toxic(p.name, "latency", latency=-1), 400, "must be a whole number >= 0"),
        (lambda c, p: c.add_toxic(p.name, "latency", stream="sideways"), 400, "unknown stream 'sideways'"),
        (lambda c, p: c.add_toxic(p.name, "latency", toxicity=1.5), 400, "toxicity must be a number from 0 to 1"),
        (lambda c, p: c.add_toxic(p.name, "bandwidth", rate=0), 400, "bandwidth rate must be > 0"),
        (lambda c, p: c.remove_toxic(p.name, "ghost"), 404, "has no toxic named 'ghost'"),
        (lambda c, p: c.create_proxy(p.name, "127.0.0.1:1"), 409, "already exists"),
        (lambda c, p: c.create_proxy("other", "127.0.0.1:1", listen_port=p.port), 409, "is busy"),
        (lambda c, p: c.create_proxy("far", "192.0.2.1:5432"), 400, "is not on loopback"),
    ],
)
def test_control_api_refusals_are_one_line_messages(client, proxy, call, status, message):
    with pytest.raises(ProxyError) as caught:
        call(client, proxy)
    assert caught.value.status == status
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_duplicate_toxic_is_refused_and_a_missing_one_may_be_ignored(client, proxy):
    client.add_toxic(proxy.name, "timeout", name="t")
    with pytest.raises(ProxyError, match="already has a toxic named 't'"):
        client.add_toxic(proxy.name, "latency", name="t")
    client.remove_toxic(proxy.name, "t")
    client.remove_toxic(proxy.name, "t", missing_ok=True)


# -- life cycle ----------------------------------------------------------------------------------------------------


def test_server_process_stops_by_pid_idempotently(tmp_path):
    proxy_server = ProxyServer.start(tmp_path, timeout=10)
    assert proxy_server.running and pid_alive(proxy_server.pid)
    assert os.getpgid(proxy_server.pid) == proxy_server.pid  # its own process group
    with proxy_server.client() as proxy_client:
        port = proxy_client.create_proxy("p", "127.0.0.1:1").port
    proxy_server.stop()
    proxy_server.stop()
    assert not proxy_server.running and not pid_alive(proxy_server.pid)
    with pytest.raises(ConnectionRefusedError):
        connect(port, timeout=1.0)


def test_a_server_that_cannot_start_says_why(tmp_path):
    with (
        socket.create_server(("127.0.0.1", 0)) as busy,
        pytest.raises(ProxyError, match="exited with status 1 before it was ready: .*address already in use"),
    ):
        ProxyServer.start(tmp_path, timeout=10, control_port=busy.getsockname()[1])


def test_server_process_exits_with_its_parent(tmp_path):
    code = (
        "import sys, pathlib; from support.proxy.client import ProxyServer; "
        "s = ProxyServer.start(pathlib.Path(sys.argv[1])); print(s.pid, flush=True)"
    )
    parent = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=20,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    orphan = int(parent.stdout.split()[0])
    wait_until(lambda: not pid_alive(orphan), 5, f"the orphaned proxy server {orphan} exiting")


def test_in_process_server_forwards_and_stops():
    async def scenario() -> bytes:
        echo_server = await asyncio.start_server(_async_echo, "127.0.0.1", 0)
        upstream_port = echo_server.sockets[0].getsockname()[1]
        fault_proxy = FaultProxyServer()
        await fault_proxy.start()
        try:
            proxy = await fault_proxy.create_proxy({"name": "p", "upstream": f"127.0.0.1:{upstream_port}"})
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"hello")
            answer = await asyncio.wait_for(reader.readexactly(5), 2)
            writer.close()
            return answer
        finally:
            await fault_proxy.stop()
            echo_server.close()
            await echo_server.wait_closed()

    assert asyncio.run(scenario()) == b"hello"


async def _async_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
