"""The load worker's HTTP client against a raw TCP server on 127.0.0.1 that answers what each test scripts."""

from __future__ import annotations

import asyncio
import socket

import pytest

from support.load.client import Answer, HttpClient


class Script:
    """A server whose answer to the n-th request (over all connections) is ``answers[n]``: bytes, or
    ``None`` to say nothing, or ``"close"`` to close without answering."""

    def __init__(self, answers: list) -> None:
        self.answers = answers
        self.requests: list[bytes] = []
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                answer = self.answers[len(self.requests) - 1]
                if answer == "close":
                    break
                if answer is None:
                    await asyncio.sleep(30)
                    break
                pieces = answer if isinstance(answer, list) else [answer]
                for piece in pieces:
                    if piece == "close":
                        break
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.01)
                if "close" in pieces or b"Connection: close" in pieces[0]:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _run(
    answers: list, requests: list[tuple[str, str, bytes | None]], *, timeout: float = 2.0, sequential: bool = True
) -> tuple[list[Answer], Script]:
    script = Script(answers)
    server = await asyncio.start_server(script.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = HttpClient(f"http://127.0.0.1:{port}", timeout=timeout)
    results: list[Answer] = []
    try:
        for method, path, body in requests:
            done = asyncio.get_running_loop().create_future()
            client.send(method, path, body, lambda answer, done=done: (results.append(answer), done.set_result(None)))
            if sequential:
                await asyncio.wait_for(done, timeout + 2)
        while len(results) < len(requests):
            await asyncio.sleep(0.01)
    finally:
        client.close()
        server.close()
    return results, script


def run(*args, **kwargs):
    return asyncio.run(_run(*args, **kwargs))


OK_JSON = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"id": 42}\n'


def test_content_length_answers_reuse_one_connection_and_the_request_is_well_formed():
    results, script = run([OK_JSON, OK_JSON], [("POST", "/users", b'{"a": 1}'), ("GET", "/users/42", None)])
    assert results == [Answer(200, b'{"id": 42}\n'), Answer(200, b'{"id": 42}\n')]
    assert script.connections == 1
    post, get = script.requests
    assert post.startswith(b"POST /users HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"Content-Type: application/json\r\nContent-Length: 8\r\n\r\n" in post and post.endswith(b'{"a": 1}')
    assert get.startswith(b"GET /users/42 HTTP/1.1\r\n") and b"Content-Length" not in get


def test_an_answer_in_pieces_chunked_bodies_and_bodies_that_end_with_the_connection():
    chunked = [b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n", b"3;x=y\r\nefg\r\n0\r\n\r\n"]
    to_close = [b"HTTP/1.1 200 OK\r\n\r\npart one, ", b"part two", "close"]
    pieces = [b"HTTP/1.1 503 Service Unavailable\r\nContent-Le", b"ngth: 4\r\n\r\nbu", b"sy"]
    results, script = run([chunked, pieces, to_close], [("GET", "/a", None), ("GET", "/b", None), ("GET", "/c", None)])
    assert results[0] == Answer(201, b"abcdefg")
    assert results[1] == Answer(503, b"busy")
    assert results[2] == Answer(200, b"part one, part two")  # no length: the body ends with the connection


def test_connection_close_interim_and_empty_answers():
    close = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    results, script = run(
        [close, interim, head], [("GET", "/", None), ("DELETE", "/users/1", None), ("HEAD", "/", None)]
    )
    assert results == [Answer(200, b"ok"), Answer(204, b""), Answer(200, b"")]
    assert script.connections == 2  # the first was closed as asked; the others shared one


def test_refused_connect_is_not_sent_and_a_silent_server_is_a_timeout():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now

    async def refused() -> Answer:
        client = HttpClient(f"http://127.0.0.1:{port}", timeout=2)
        done = asyncio.get_running_loop().create_future()
        client.send("GET", "/", None, done.set_result)
        return await asyncio.wait_for(done, 3)

    assert asyncio.run(refused()) == Answer(None, error="connection refused", sent=False)
    results, _ = run([None], [("GET", "/", None)], timeout=0.3)
    assert results == [Answer(None, error="timeout")]


def test_closed_without_answer_and_cut_mid_answer_are_unknown_outcomes():
    results, _ = run(["close"], [("GET", "/", None)])
    assert results == [Answer(None, error="server disconnected")]

    async def cut_mid_answer() -> Answer:
        async def handle(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        client = HttpClient(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", timeout=2)
        done = asyncio.get_running_loop().create_future()
        client.send("GET", "/", None, done.set_result)
        try:
            return await asyncio.wait_for(done, 3)
        finally:
            server.close()

    assert asyncio.run(cut_mid_answer()) == Answer(None, error="incomplete answer")


def test_concurrent_requests_each_get_a_connection_and_their_own_timeout():
    results, script = run([None, None], [("GET", "/", None)] * 2, timeout=0.3, sequential=False)
    assert [a.error for a in results] == ["timeout", "timeout"]
    assert script.connections == 2


def test_a_malformed_answer_is_reported_not_raised():
    results, _ = run([b"SPDY/9 what\r\n\r\n"], [("GET", "/", None)])
    assert results[0].status is None and results[0].error.startswith("malformed answer: bad status line")


def test_only_http_urls():
    async def make():
        HttpClient("ftp://127.0.0.1/", timeout=1)

    with pytest.raises(ValueError, match="not an http"):
        asyncio.run(make())


# -- the parser path (httptools): framing, keep-alive and what it refuses -------------------------------------------


def test_chunked_with_extensions_and_trailers_split_anywhere():
    chunked = [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;name=v",
        b"alue\r\nhel",
        b"lo\r\n1\r\n!\r\n0\r\n",
        b"X-Trailer: yes\r\n\r\n",
    ]
    results, script = run([chunked, OK_JSON], [("GET", "/a", None), ("GET", "/b", None)])
    assert results == [Answer(200, b"hello!"), Answer(200, b'{"id": 42}\n')]
    assert script.connections == 1  # a chunked answer ends where its last chunk says: the connection is kept


def test_content_length_body_in_pieces_and_a_zero_length_body():
    pieces = [b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n", b"ab", b"cd", b"ef"]
    empty = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
    results, script = run([pieces, empty, OK_JSON], [("GET", "/", None), ("POST", "/users", b"{}"), ("GET", "/", None)])
    assert results == [Answer(200, b"abcdef"), Answer(201, b""), Answer(200, b'{"id": 42}\n')]
    assert script.connections == 1


def test_keep_alive_follows_the_version_and_the_connection_header():
    http10 = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"  # HTTP/1.0 closes unless it says keep-alive
    http10_kept = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"
    results, script = run([http10, http10_kept, OK_JSON], [("GET", "/", None)] * 3)
    assert results == [Answer(200, b"ok"), Answer(200, b"ok"), Answer(200, b'{"id": 42}\n')]
    assert script.connections == 2


def test_a_head_answer_has_no_body_and_its_connection_serves_the_next_request():
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    results, script = run([head, OK_JSON], [("HEAD", "/", None), ("GET", "/", None)])
    assert results == [Answer(200, b""), Answer(200, b'{"id": 42}\n')]
    assert script.connections == 1


def test_malformed_headers_and_bytes_after_the_answer():
    bad_length = b"HTTP/1.1 200 OK\r\nContent-Length: twelve\r\n\r\n"
    too_long = b"HTTP/1.1 200 OK\r\nX-Big: " + b"x" * 70_000
    extra = OK_JSON + b"HTTP/1.1 200 OK\r\n"  # more than was asked for: the answer counts, the connection does not
    results, script = run([bad_length, too_long, extra, OK_JSON], [("GET", "/", None)] * 4)
    assert results[0].status is None and results[0].error.startswith("malformed answer: ")
    assert results[1] == Answer(None, error="malformed answer: header section too long")
    assert results[2:] == [Answer(200, b'{"id": 42}\n')] * 2
    assert script.connections == 4  # no connection that carried a malformed answer or extra bytes is reused


def test_an_upgrade_nobody_asked_for_is_malformed():
    upgrade = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    results, _ = run([upgrade], [("GET", "/", None)])
    assert results == [Answer(None, error="malformed answer: an upgrade nobody asked for")]
