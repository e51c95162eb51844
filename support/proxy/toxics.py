"""The toxic model: what a toxic is, its vocabulary (Toxiproxy's) and how its JSON form is validated.

Toxics (``stream``: ``downstream`` = upstream->client, ``upstream`` =
client->upstream; ``toxicity``: the chance, rolled once per connection and
toxic, that the toxic applies to that connection):

- ``latency`` {latency ms, jitter ms}: each chunk is released ``latency`` +/- a
  uniform ``jitter`` after it arrived;
- ``bandwidth`` {rate KB/s, KB = 1000 bytes}: data paced at ``rate``;
- ``timeout`` {timeout ms}: data stops flowing; 0 = until the toxic is removed,
  > 0 = the connection is closed that long after the toxic met it. Unlike
  Toxiproxy, held data is not dropped: it flows again once the toxic is removed,
  like a partition that heals (TCP retransmits; a stream never loses bytes);
- ``reset_peer`` {timeout ms}: both sockets are reset (RST, ``SO_LINGER`` 0)
  ``timeout`` after the toxic met the connection;
- ``slow_close`` {delay ms}: the close (EOF) of that stream is delayed;
- ``limit_data`` {bytes}: the connection is closed once that many bytes of the
  stream passed;
- ``http_abort``, ``http_delay`` {delay ms}, ``http_replace`` {status,
  retry_after s}, each with ``method`` and ``path`` (strings): on a link made with
  ``protocol = "http"`` only, per request of the ``upstream`` stream, ``toxicity``
  being the chance per request (:mod:`support.proxy.http_mode`).

How a toxic holds the bytes of a stream is :mod:`support.proxy.pipe`'s; this
module knows only what a toxic says. :class:`ProxyApiError` is the one refusal
of the whole proxy (here, in the data plane and in the control API).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ProxyApiError", "Toxic", "make_toxic", "STREAMS", "TOXIC_ATTRIBUTES", "DATA_TOXICS", "STRING_ATTRIBUTES"]

STREAMS = ("downstream", "upstream")
#: each toxic type and its attributes with their defaults (ms, KB/s or bytes, as Toxiproxy; s for retry_after)
TOXIC_ATTRIBUTES: dict[str, dict[str, Any]] = {
    "latency": {"latency": 0, "jitter": 0},
    "bandwidth": {"rate": 0},
    "timeout": {"timeout": 0},
    "reset_peer": {"timeout": 0},
    "slow_close": {"delay": 0},
    "limit_data": {"bytes": 0},
    "http_abort": {"method": "", "path": ""},
    "http_delay": {"delay": 0, "method": "", "path": ""},
    "http_replace": {"status": 500, "retry_after": 0, "method": "", "path": ""},
}
#: attributes that are text (an HTTP method, a path glob), not whole numbers
STRING_ATTRIBUTES = frozenset({"method", "path"})
#: toxics that act on the bytes themselves; the others act on the connection or its close
DATA_TOXICS = frozenset({"latency", "bandwidth", "timeout", "limit_data"})
_uids = itertools.count(1)


class ProxyApiError(Exception):
    """A request the proxy refuses; ``status`` is the HTTP status the control API answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Toxic:
    """One toxic as configured; ``uid`` changes on every update so per-connection state restarts."""

    name: str
    type: str
    stream: str
    toxicity: float
    attributes: dict[str, Any]
    uid: int = field(default_factory=lambda: next(_uids), compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": dict(self.attributes),
        }


def make_toxic(data: dict[str, Any], base: Toxic | None = None) -> Toxic:
    """A validated :class:`Toxic` from its JSON form; with ``base``, an update of that toxic."""
    if not isinstance(data, dict):
        raise ProxyApiError(400, "a toxic is a JSON object")
    kind = data.get("type", base.type if base else None)
    if kind not in TOXIC_ATTRIBUTES:
        raise ProxyApiError(400, f"unknown toxic type {kind!r}; valid types: {', '.join(TOXIC_ATTRIBUTES)}")
    if base is not None and kind != base.type:
        raise ProxyApiError(400, f"toxic {base.name!r} is a {base.type} toxic; its type cannot change")
    http = kind.startswith("http_")
    stream = data.get("stream", base.stream if base else ("upstream" if http else "downstream"))
    if stream not in STREAMS:
        raise ProxyApiError(400, f"unknown stream {stream!r}; valid streams: {', '.join(STREAMS)}")
    if http and stream != "upstream":
        raise ProxyApiError(400, f"a {kind} toxic acts on requests: its stream is upstream, not {stream!r}")
    name = data.get("name") or (base.name if base else f"{kind}_{stream}")
    if not isinstance(name, str) or "/" in name:
        raise ProxyApiError(400, f"bad toxic name {name!r}")
    toxicity = data.get("toxicity", base.toxicity if base else 1.0)
    if isinstance(toxicity, bool) or not isinstance(toxicity, (int, float)) or not 0.0 <= toxicity <= 1.0:
        raise ProxyApiError(400, f"toxicity must be a number from 0 to 1, not {toxicity!r}")
    attributes = dict(base.attributes) if base else dict(TOXIC_ATTRIBUTES[kind])
    given = data.get("attributes") or {}
    if not isinstance(given, dict):
        raise ProxyApiError(400, "attributes is a JSON object")
    for key, value in given.items():
        if key not in TOXIC_ATTRIBUTES[kind]:
            raise ProxyApiError(
                400,
                f"unknown attribute {key!r} for a {kind} toxic; valid attributes: {', '.join(TOXIC_ATTRIBUTES[kind])}",
            )
        if key in STRING_ATTRIBUTES:
            if not isinstance(value, str) or len(value) > 200:
                raise ProxyApiError(400, f"{kind} attribute {key} must be a string, not {value!r}")
            attributes[key] = value
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != int(value):
            raise ProxyApiError(400, f"{kind} attribute {key} must be a whole number >= 0, not {value!r}")
        attributes[key] = int(value)
    if kind == "bandwidth" and attributes["rate"] <= 0:
        raise ProxyApiError(400, "bandwidth rate must be > 0 KB/s (to stop data altogether use a timeout toxic)")
    if kind == "http_replace" and not 200 <= attributes["status"] <= 599:
        raise ProxyApiError(400, f"http_replace status must be from 200 to 599, not {attributes['status']}")
    return Toxic(name, kind, stream, float(toxicity), attributes)
