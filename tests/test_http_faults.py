"""The fault proxy's HTTP mode: requests framed on keep-alive connections, and abort, delay and replace
acting on real sockets between a real HTTP client and a real HTTP server."""

import http.client
import json
import random
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from suite_runner import leftovers, project_with, run_behave

from support.proxy.client import ProxyError, ProxyServer
from support.proxy.http_mode import RequestFramer


# -- the framer -----------------------------------------------------------------------------
def frame(data: bytes, step: int | None = None) -> list[tuple[str, bytes]]:
    """(method path, bytes) per request as framed from ``data`` fed whole or ``step`` bytes at a time."""
    framer = RequestFramer()
    seen: dict[int, list] = {}
    order: list[int] = []
    ends = []
    kept = []  # the requests themselves, so no id is reused
    pieces = [data] if step is None else [data[i : i + step] for i in range(0, len(data), step)]
    for piece in pieces:
        for request, part, last in framer.feed(piece):
            key = id(request) if request is not None else 0
            kept.append(request)
            if key not in seen:
                seen[key] = [f"{request.method} {request.path}" if request else "-", b""]
                order.append(key)
            seen[key][1] += part
            if last:
                ends.append(key)
    assert ends == [k for k in order if k != 0]
    return [(seen[k][0], seen[k][1]) for k in order]


KEEP_ALIVE = (
    b"GET /users/1?x=2 HTTP/1.1\r\nHost: a\r\n\r\n"
    b'POST /users HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n{"a": "b"}\n'
    b"POST /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-T: 1\r\n\r\n"
    b"HEAD /health HTTP/1.1\r\n\r\n"
)


@pytest.mark.parametrize("step", [None, 1, 3, 17])
def test_the_framer_cuts_keep_alive_requests_at_their_boundaries_however_the_bytes_arrive(step):
    framed = frame(KEEP_ALIVE, step)
    assert [name for name, _ in framed] == ["GET /users/1", "POST /users", "POST /upload", "HEAD /health"]
    assert b"".join(part for _, part in framed) == KEEP_ALIVE
    assert framed[1][1].endswith(b'{"a": "b"}\n')
    assert framed[2][1].endswith(b"0\r\nX-T: 1\r\n\r\n")


def test_bytes_it_cannot_frame_pass_through_untouched():
    data = b"GET /a HTTP/1.1\r\nContent-Length: nope\r\n\r\nGET /b HTTP/1.1\r\n\r\n"
    framed = frame(data)
    assert framed[0][0] == "GET /a"
    assert b"".join(part for _, part in framed) == data
    assert [name for name, _ in framed][1:] == ["-"]  # the rest is plain bytes, no request
    assert frame(b"\x16\x03\x01 not http\r\n\r\n") == [("-", b"\x16\x03\x01 not http\r\n\r\n")]


# -- real sockets -----------------------------------------------------------------------------
class Upstream:
    """A threaded HTTP/1.1 server on 127.0.0.1 that answers every request 200 and counts what it got."""

    def __init__(self) -> None:
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.headers.get("Transfer-Encoding") == "chunked":
                    while size := int(self.rfile.readline().split(b";")[0], 16):
                        body += self.rfile.read(size + 2)[:-2]
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                seen.append((self.command, self.path, body))
                out = json.dumps({"ok": True, "n": len(seen)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proxy_server = ProxyServer.start(tmp_path_factory.mktemp("proxy"))
    yield proxy_server
    proxy_server.stop()


@pytest.fixture(scope="module")
def client(server):
    with server.client() as proxy_client:
        yield proxy_client


@pytest.fixture
def upstream():
    up = Upstream()
    yield up
    up.close()


@pytest.fixture
def link(client, upstream, request):
    name = f"http_{request.node.name[:40]}".replace("[", "_").replace("]", "_")
    info = client.create_proxy(name, f"127.0.0.1:{upstream.port}", protocol="http")
    yield info
    client.delete_proxy(name)


def keep_alive(port: int) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=5)


def call(conn: http.client.HTTPConnection, method: str = "GET", path: str = "/users/1", body: bytes | None = None):
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
    response = conn.getresponse()
    return response.status, dict(response.getheaders()), response.read()


def test_without_toxics_requests_pass_on_one_keep_alive_connection(client, link, upstream):
    conn = keep_alive(link.port)
    for i in range(30):
        assert call(conn, "POST", "/users", b'{"i": %d}' % i)[0] == 200
    assert call(conn)[0] == 200
    assert len(upstream.seen) == 31 and upstream.seen[5] == ("POST", "/users", b'{"i": 5}')
    assert conn.sock is not None  # still the same connection
    assert client.proxy(link.name).protocol == "http"


def test_replace_answers_in_the_services_place_by_method_and_path_with_retry_after(client, link, upstream):
    client.add_toxic(link.name, "http_replace", name="r", status=429, retry_after=3, method="post", path="/users*")
    conn = keep_alive(link.port)
    status, headers, body = call(conn, "POST", "/users", b'{"a": 1}')
    assert (status, headers["Retry-After"]) == (429, "3") and b"fault proxy" in body
    assert call(conn, "GET", "/users/7")[0] == 200  # another method: passed, on the same connection
    assert call(conn, "PUT", "/users/7", b"{}")[0] == 200
    assert [(m, p) for m, p, _ in upstream.seen] == [("GET", "/users/7"), ("PUT", "/users/7")]
    client.remove_toxic(link.name, "r")
    assert call(conn, "POST", "/users", b"{}")[0] == 200  # healed: the next request on that connection passes


def test_replace_hits_about_the_share_of_requests_asked_for(client, link, upstream):
    client.add_toxic(link.name, "http_replace", name="r", toxicity=0.3, status=500)
    conn = keep_alive(link.port)
    statuses = [call(conn)[0] for _ in range(300)]
    hit = statuses.count(500)
    # binomial(300, 0.3): mean 90, sd 7.9; the bounds are more than 5 sd away
    assert 50 <= hit <= 130 and statuses.count(200) == 300 - hit
    assert len(upstream.seen) == 300 - hit


def test_abort_closes_the_connection_before_the_service_sees_the_request(client, link, upstream):
    client.add_toxic(link.name, "http_abort", name="a", path="/orders")
    conn = keep_alive(link.port)
    assert call(conn, "GET", "/users/1")[0] == 200
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        call(conn, "POST", "/orders", b"{}")
    assert [p for _, p, _ in upstream.seen] == ["/users/1"]
    conn.close()
    assert call(keep_alive(link.port), "GET", "/users/2")[0] == 200  # another path on a new connection passes


def test_delay_holds_each_request_and_its_heal_releases_a_held_one_at_once(client, link, upstream):
    conn = keep_alive(link.port)
    started = time.monotonic()
    call(conn)
    direct = time.monotonic() - started
    client.add_toxic(link.name, "http_delay", name="d", delay=300)
    for _ in range(3):
        started = time.monotonic()
        assert call(conn, "POST", "/users", b"{}")[0] == 200
        assert time.monotonic() - started >= 0.3
    client.update_toxic(link.name, "d", delay=60_000)
    started = time.monotonic()
    threading.Timer(0.3, client.remove_toxic, (link.name, "d")).start()
    assert call(conn)[0] == 200
    assert time.monotonic() - started < 3.0  # released by the heal, not after a minute
    assert direct < 0.3


def read_response(sock: socket.socket) -> bytes:
    """One whole answer with a Content-Length from ``sock``: a server may send its head and body apart."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    length = int(match.group(1)) if match else 0
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def test_a_chunked_request_then_a_replaced_one_on_the_same_connection(client, link, upstream):
    client.add_toxic(link.name, "http_replace", name="r", status=503, path="/second")
    sock = socket.create_connection(("127.0.0.1", link.port), timeout=5)
    sock.sendall(b"POST /first HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    first = read_response(sock)
    sock.sendall(b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
    second = read_response(sock)
    sock.close()
    assert first.startswith(b"HTTP/1.0 200") or first.startswith(b"HTTP/1.1 200")
    assert second.startswith(b"HTTP/1.1 503 Service Unavailable")
    assert [p for _, p, _ in upstream.seen] == ["/first"]


def test_http_toxics_are_refused_on_a_plain_tcp_link_and_with_bad_attributes(client, upstream):
    client.create_proxy("plain_tcp", f"127.0.0.1:{upstream.port}")
    try:
        with pytest.raises(ProxyError, match="carries plain TCP; a http_abort toxic needs a proxy made with protocol"):
            client.add_toxic("plain_tcp", "http_abort")
    finally:
        client.delete_proxy("plain_tcp")
    client.create_proxy("bad_attrs", f"127.0.0.1:{upstream.port}", protocol="http")
    try:
        with pytest.raises(ProxyError, match="status must be from 200 to 599"):
            client.add_toxic("bad_attrs", "http_replace", status=42)
        with pytest.raises(ProxyError, match="attribute method must be a string"):
            client.add_toxic("bad_attrs", "http_abort", method=3)
    finally:
        client.delete_proxy("bad_attrs")
    with pytest.raises(ProxyError, match="protocol must be 'tcp' or 'http'"):
        client.create_proxy("bad_protocol", f"127.0.0.1:{upstream.port}", protocol="udp")


def test_random_keep_alive_traffic_is_forwarded_byte_exact(client, link, upstream):
    rng = random.Random(7)
    conn = keep_alive(link.port)
    sent = []
    for i in range(40):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 3000)))
        sent.append(body)
        assert call(conn, "PUT", f"/blob/{i}", body)[0] == 200
    assert [b for _, _, b in upstream.seen] == sent


# -- the steps and features, in real behave runs --------------------------------------------------
FEATURE = "features/network/http_faults.feature"

SEEN_BY_THE_CHECKERS = """\
Feature: What the HTTP faults do is seen by the checkers
  Scenario: 500s answered in front of the API are not 503s
    Given the stack is healthy
    And a steady load of 40 requests per second
    When 30% of requests from load to api get 500 for 2 seconds
    Then every failed request is answered with 503

  Scenario: Requests held longer than the bound are slow
    Given the stack is healthy
    And a steady load of 20 requests per second
    When requests from load to api are delayed by 1500 ms for 2 seconds
    Then the API answers within 1 second while the fault lasts

  Scenario: An HTTP fault on a link that carries no HTTP is refused in one line
    Given the stack is healthy
    When 50% of requests from api to postgres are aborted for 1 second
"""


def test_the_http_fault_scenarios_pass_against_the_reference_api(tmp_path):
    run = run_behave(tmp_path / "work", FEATURE)
    assert run.returncode == 0, run.output[-6000:]
    assert "\n4 scenarios passed, 0 failed" in run.output, run.output[-3000:]
    assert "api link HTTP answered 429" in run.output
    assert leftovers(run) == []


def test_the_checkers_see_the_injected_statuses_and_delays_and_a_tcp_link_is_refused(tmp_path):
    project = project_with(tmp_path, "seen.feature", SEEN_BY_THE_CHECKERS)
    run = run_behave(tmp_path / "work", cwd=project)
    assert run.returncode == 1, run.output[-6000:]
    assert "0 scenarios passed, 3 failed" in run.output, run.output[-3000:]
    assert re.search(r"\d+ failed requests? not answered with 503: \d+ with another status \(500 x\d+", run.output)
    assert re.search(r"\d+ of the \d+ requests started while the fault lasted .* took longer than 1 s", run.output), (
        run.output[-3000:]
    )
    assert "the postgres link carries plain TCP, not HTTP: HTTP faults act on an HTTP link" in run.output
    assert "Traceback" not in run.output
    assert leftovers(run) == []


def test_a_load_link_to_another_service_than_the_target_is_refused_before_anything_starts(tmp_path):
    feature = SEEN_BY_THE_CHECKERS.replace("from load to api get 500", "from load to postgres get 500")
    project = project_with(tmp_path, "wrong_end.feature", feature)
    run = run_behave(tmp_path / "work", cwd=project)
    assert run.returncode == 2, run.output[-3000:]
    assert "the load's link goes to the workload's target, api, not to postgres" in run.output
    assert run.run_dirs == []
