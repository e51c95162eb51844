"""HTTP/1.1 on a proxied link: requests cut out of a client's byte stream, and what an HTTP toxic does to each.

A link made with ``protocol = "http"`` frames the client-to-server stream into
requests (:class:`RequestFramer`) so that the HTTP toxics, in Chaos Mesh
HTTPChaos's vocabulary, act on whole requests of a keep-alive connection:

- ``http_abort``: the connection is closed when a matching request begins (the
  service never sees it; the client gets no answer);
- ``http_delay`` {delay ms}: the request is held ``delay`` ms from its arrival,
  then forwarded (later requests of the connection wait behind it);
- ``http_replace`` {status, retry_after s}: the request is not forwarded; the
  proxy answers it with ``status`` (and ``Retry-After`` when ``retry_after`` > 0),
  as a gateway or rate limiter in front of the service would. (Chaos Mesh can
  also rewrite a real answer's code; that needs the answers framed too, and a
  4xx on a write the service applied would make a ``fail`` outcome a lie.)

Each takes ``method`` (exact, any case; empty = every method) and ``path`` (a
glob on the path without its query, ``/users*``; empty = every path); the
toxic's ``toxicity`` is the chance per matching request, not per connection.

The framer is written by hand, not with ``httptools``: llhttp's callbacks give
no byte offsets, and a proxy must cut the stream exactly where a request ends.
Anything it cannot frame (a bad request line, a head over 64 KiB, a bad
``Content-Length``, an upgrade) turns the rest of that connection into plain
bytes passed through untouched: the proxy never breaks a connection the service
would have served. Requests are assumed not pipelined (each sent after the last
one's answer), as browsers, the load worker and nearly every client do; a
replaced answer is written when its request is complete.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase

from support.proxy.toxics import Toxic

__all__ = ["HttpRequest", "RequestFramer", "Action", "decide", "reply_bytes", "HTTP_TOXICS", "PASS"]

HTTP_TOXICS = frozenset({"http_abort", "http_delay", "http_replace"})
_MAX_HEAD = 64 * 1024
_MAX_LINE = 8 * 1024
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_REQUEST_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) HTTP/\d\.\d")


#: reason phrases of the statuses a replace toxic is likely given (a client reads the code, not the phrase);
#: written out because mypy, given steps/ as a folder of top-level modules, takes steps/http.py for ``http``
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass(frozen=True)
class Action:
    """What happens to one request: ``pass``, ``delay`` (``delay`` s), ``abort`` or ``replace`` (by ``toxic``)."""

    kind: str
    toxic: Toxic | None = None
    delay: float = 0.0


PASS = Action("pass")


class HttpRequest:
    """One request seen on a connection: its method and path, and the action decided for it."""

    __slots__ = ("method", "path", "action", "close", "release")

    def __init__(self, method: str, path: str) -> None:
        self.method = method
        self.path = path
        self.action: Action | None = None  # decided when the request line is complete
        self.close = False  # ``Connection: close``: the connection ends after this request's answer
        self.release = 0.0  # loop time a delayed request is forwarded at


Piece = tuple["HttpRequest | None", bytes, bool]  # (the request the bytes belong to, the bytes, its last piece)


class RequestFramer:
    """Cuts a client's byte stream into requests; :meth:`feed` says which bytes belong to which."""

    def __init__(self) -> None:
        self.state = "line"
        self.held = bytearray()  # the request line (until complete), a header block, a chunk-size line, trailers
        self.left = 0  # bytes of body (or chunk data and its CRLF) still to come
        self.request: HttpRequest | None = None
        self.upgrade = False

    def feed(self, data: bytes) -> list[Piece]:
        """The pieces of ``data`` in order; a request's first piece comes once its request line is complete."""
        out: list[list] = []
        view = memoryview(data)
        i = 0
        while i < len(view):
            if self.state == "opaque":
                out.append([None, bytes(view[i:]), False])
                break
            if self.state == "line":
                i = self._line(view, i, out)
            elif self.state == "head":
                i = self._head(view, i, out)
            elif self.state in ("body", "chunk_data"):
                n = min(self.left, len(view) - i)
                out.append([self.request, bytes(view[i : i + n]), False])
                i += n
                self.left -= n
                if self.left == 0:
                    if self.state == "body":
                        self._end(out)
                    else:
                        self.state = "chunk_size"
            elif self.state == "chunk_size":
                i = self._chunk_size(view, i, out)
            else:  # trailer
                i = self._trailer(view, i, out)
        return [(p[0], p[1], p[2]) for p in out]

    # -- states --------------------------------------------------------------------
    def _line(self, view: memoryview, i: int, out: list[list]) -> int:
        end = _find(view, b"\n", i)
        take = (end + 1 if end >= 0 else len(view)) - i
        self.held += view[i : i + take]
        if end < 0:
            if len(self.held) > _MAX_LINE:
                self._opaque(out)
            return i + take
        line = bytes(self.held).rstrip(b"\r\n")
        if not line:  # an empty line between requests, which servers ignore
            out.append([None, bytes(self.held), False])
            self.held.clear()
            return i + take
        match = _REQUEST_LINE.fullmatch(line)
        if match is None:
            self._opaque(out)
            return i + take
        method, target = match.group(1).decode("ascii"), match.group(2).decode("latin-1")
        self.request = HttpRequest(method.upper(), target.split("?", 1)[0])
        self.upgrade = method.upper() == "CONNECT"
        out.append([self.request, bytes(self.held), False])
        self.held.clear()
        self.state = "head"
        return i + take

    def _head(self, view: memoryview, i: int, out: list[list]) -> int:
        before = len(self.held)
        self.held += view[i:]
        block = b"\r\n" + bytes(self.held)  # so a head without header lines ends too
        found = _HEAD_END.search(block)
        if found is None:
            out.append([self.request, bytes(view[i:]), False])
            if len(self.held) > _MAX_HEAD:
                self._opaque(out, held_sent=True)
            return len(view)
        used = found.end() - 2 - before  # bytes of this feed that belong to the head
        out.append([self.request, bytes(view[i : i + used]), False])
        headers = _headers(block[2 : found.start()])
        self.held.clear()
        self._body(headers, out)
        return i + used

    def _body(self, headers: dict[bytes, list[bytes]], out: list[list]) -> None:
        assert self.request is not None
        connection = b",".join(headers.get(b"connection", [])).lower()
        self.request.close = b"close" in connection
        if b"upgrade" in headers or b"upgrade" in connection:
            self.upgrade = True
        coding = b",".join(headers.get(b"transfer-encoding", [])).lower()
        if coding:
            if coding.rsplit(b",", 1)[-1].strip() != b"chunked":
                self._end(out, opaque=True)  # a body that ends with the connection
                return
            self.state = "chunk_size"
            return
        lengths = {v.strip() for v in headers.get(b"content-length", [])}
        if not lengths:
            self._end(out)
            return
        length = lengths.pop()
        if lengths or not length.isdigit():
            self._end(out, opaque=True)
            return
        self.left = int(length)
        if self.left == 0:
            self._end(out)
        else:
            self.state = "body"

    def _chunk_size(self, view: memoryview, i: int, out: list[list]) -> int:
        end = _find(view, b"\n", i)
        take = (end + 1 if end >= 0 else len(view)) - i
        self.held += view[i : i + take]
        out.append([self.request, bytes(view[i : i + take]), False])
        if end < 0:
            if len(self.held) > _MAX_LINE:
                self._end(out, opaque=True)
            return i + take
        size_text = bytes(self.held).split(b";", 1)[0].strip()
        self.held.clear()
        try:
            size = int(size_text, 16)
        except ValueError:
            self._end(out, opaque=True)
            return i + take
        if size == 0:
            self.state = "trailer"
        else:
            self.left = size + 2  # the data and its CRLF
            self.state = "chunk_data"
        return i + take

    def _trailer(self, view: memoryview, i: int, out: list[list]) -> int:
        before = len(self.held)
        self.held += view[i:]
        block = b"\n" + bytes(self.held)
        found = re.search(rb"\n\r?\n", block)
        if found is None:
            out.append([self.request, bytes(view[i:]), False])
            if len(self.held) > _MAX_HEAD:
                self._end(out, opaque=True)
            return len(view)
        used = found.end() - 1 - before
        out.append([self.request, bytes(view[i : i + used]), False])
        self.held.clear()
        self._end(out)
        return i + used

    def _end(self, out: list[list], opaque: bool = False) -> None:
        request = self.request
        if out and out[-1][0] is request:
            out[-1][2] = True
        else:
            out.append([request, b"", True])
        self.request = None
        self.state = "opaque" if opaque or self.upgrade else "line"

    def _opaque(self, out: list[list], held_sent: bool = False) -> None:
        if not held_sent and self.held:
            out.append([None, bytes(self.held), False])
        self.held.clear()
        self.request = None
        self.state = "opaque"


def _find(view: memoryview, needle: bytes, start: int) -> int:
    return view.obj.find(needle, start) if isinstance(view.obj, bytes) else bytes(view).find(needle, start)


def _headers(block: bytes) -> dict[bytes, list[bytes]]:
    headers: dict[bytes, list[bytes]] = {}
    for line in block.split(b"\n"):
        name, sep, value = line.rstrip(b"\r").partition(b":")
        if sep:
            headers.setdefault(name.strip().lower(), []).append(value.strip())
    return headers


def matches(toxic: Toxic, request: HttpRequest) -> bool:
    """Whether ``toxic``'s ``method`` and ``path`` select ``request`` (empty selects every one)."""
    method, path = toxic.attributes.get("method", ""), toxic.attributes.get("path", "")
    if method and str(method).upper() != request.method:
        return False
    return not path or fnmatchcase(request.path, str(path))


def decide(toxics: list[Toxic], request: HttpRequest, rng: random.Random | None = None) -> Action:
    """The action for ``request``: the first HTTP toxic (in order) that selects it and whose roll hits."""
    roll = (rng or random).random
    for toxic in toxics:
        if toxic.type not in HTTP_TOXICS or not matches(toxic, request):
            continue
        if toxic.toxicity < 1.0 and roll() >= toxic.toxicity:
            continue
        if toxic.type == "http_delay":
            return Action("delay", toxic, int(toxic.attributes["delay"]) / 1000.0)
        return Action("abort" if toxic.type == "http_abort" else "replace", toxic)
    return PASS


def reply_bytes(toxic: Toxic, request: HttpRequest) -> bytes:
    """The answer an ``http_replace`` toxic gives ``request`` in the service's place (a small JSON body)."""
    status = int(toxic.attributes["status"])
    reason = _REASONS.get(status, "Injected Status")
    body = b'{"detail":"answered by the fault proxy (http_replace)"}'
    head = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json", f"Content-Length: {len(body)}"]
    retry_after = int(toxic.attributes.get("retry_after", 0))
    if retry_after > 0:
        head.append(f"Retry-After: {retry_after}")
    if request.close:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (b"" if request.method == "HEAD" else body)
