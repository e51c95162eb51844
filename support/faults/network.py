"""Network faults on a proxied link, in Toxiproxy's vocabulary."""

from __future__ import annotations

from dataclasses import dataclass

from support.faults.base import Fault
from support.proxy.link import Link

__all__ = ["LinkFault", "LinkLatency", "LinkDown", "LinkReset", "LinkToxic", "LinkStall"]


@dataclass
class LinkFault(Fault):
    """A fault on one proxied link; its target is the link."""

    link: Link

    @property
    def target(self) -> str:
        return f"{self.link.name} link"


@dataclass
class LinkToxic(LinkFault):
    """Any Toxiproxy toxic on a link (``latency``, ``bandwidth``, ``timeout``, ``slow_close``, ``limit_data``...).

    ``attributes`` are Toxiproxy's (ms, KB/s, bytes); ``stream`` is
    ``downstream`` (server to client) or ``upstream``.
    """

    type: str
    attributes: dict
    stream: str = "downstream"
    instant: bool = False

    @property
    def name(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.attributes.items())
        return f"{self.type} ({shown})" if shown else self.type

    @property
    def toxic_name(self) -> str:
        return f"chaos_{self.type}_{self.stream}"

    def inject(self) -> None:
        self.link.client.add_toxic(
            self.link.name, self.type, name=self.toxic_name, stream=self.stream, **self.attributes
        )

    def heal(self) -> None:
        self.link.client.remove_toxic(self.link.name, self.toxic_name, missing_ok=True)


def LinkLatency(link: Link, ms: float, jitter_ms: float = 0) -> LinkToxic:
    """Every reply from PostgreSQL arrives ``ms`` later (± ``jitter_ms``): each round trip is that much slower."""
    return LinkToxic(link, "latency", {"latency": int(ms), "jitter": int(jitter_ms)})


@dataclass
class LinkStall(LinkFault):
    """Nothing flows either way (a ``timeout`` toxic of 0 on both streams): connections stay open and silent.

    The heal removes both toxics; what the link held then flows on, as after a
    partition that heals (TCP retransmits; no byte is lost).
    """

    instant: bool = False
    name: str = "stall"

    def inject(self) -> None:
        for stream in ("upstream", "downstream"):
            self.link.client.add_toxic(
                self.link.name, "timeout", name=f"chaos_stall_{stream}", stream=stream, timeout=0
            )

    def heal(self) -> None:
        for stream in ("downstream", "upstream"):
            self.link.client.remove_toxic(self.link.name, f"chaos_stall_{stream}", missing_ok=True)


@dataclass
class LinkDown(LinkFault):
    """The whole link is down: new connections are refused and open ones cut."""

    instant: bool = False
    name: str = "down"

    def inject(self) -> None:
        self.link.client.set_enabled(self.link.name, False)

    def heal(self) -> None:
        self.link.client.set_enabled(self.link.name, True)


@dataclass
class LinkReset(LinkFault):
    """Every open connection on the link is reset (RST) at once; new ones work again right after."""

    instant: bool = True
    name: str = "reset_peer"

    def inject(self) -> None:
        # the proxy resets existing connections as soon as a reset_peer toxic with timeout 0 appears
        self.link.client.add_toxic(self.link.name, "reset_peer", name="chaos_reset", stream="downstream", timeout=0)
        self.link.client.remove_toxic(self.link.name, "chaos_reset", missing_ok=True)

    def heal(self) -> None:
        self.link.client.remove_toxic(self.link.name, "chaos_reset", missing_ok=True)
