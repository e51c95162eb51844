"""The network link between the API and PostgreSQL, through the suite's fault proxy.

The API never connects to PostgreSQL directly: its database URL points at a
proxy (:mod:`support.proxy`) that the suite controls, so the link can be slowed,
cut or reset in Toxiproxy's terms. The suite's own administrative connections
go straight to PostgreSQL, so a broken link never blinds the checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from support.proxy.client import ProxyClient, ProxyServer
from support.stack.services import Address
from support.stack.stack import LOAD, Stack

__all__ = ["Link", "start_link", "add_load_link", "POSTGRES_LINK"]

POSTGRES_LINK = "postgres"


@dataclass
class Link:
    """One proxied link: ``address`` is where the client connects; ``client`` drives the proxy."""

    name: str
    server: ProxyServer
    client: ProxyClient
    address: Address
    upstream: Address
    #: ``tcp`` or ``http`` (requests framed: the HTTP faults act on it)
    protocol: str = "tcp"

    def heal(self) -> None:
        """Enable the link and remove every toxic (idempotent)."""
        self.client.set_enabled(self.name, True)
        for toxic in self.client.toxics(self.name):
            self.client.remove_toxic(self.name, toxic.name, missing_ok=True)

    def close(self) -> None:
        """Stop the proxy process (idempotent)."""
        self.client.close()
        self.server.stop()


def start_link(run_dir: Path, name: str, upstream: Address, timeout: float = 10.0, protocol: str = "tcp") -> Link:
    """Start a proxy process in ``run_dir`` and a proxy ``name`` to ``upstream`` on a free loopback port
    (``protocol`` ``http``: requests framed, for the HTTP toxics)."""
    server = ProxyServer.start(run_dir, timeout=timeout)
    try:
        client = server.client()
        info = client.create_proxy(name, upstream, protocol=protocol)
    except BaseException:
        server.stop()
        raise
    return Link(name, server, client, info.address, upstream, protocol)


def add_load_link(stack: Stack, run_dir: Path, timeout: float = 10.0) -> Link | None:
    """Put an HTTP link between the load and the workload's target: ``stack.links[("load", target)]``, and
    ``stack.load_url`` its listener, so the HTTP faults can act on the load's requests.

    Made for every stack (none when a service is itself named ``load``, or the target speaks HTTPS, which the
    proxy cannot frame). The suite's own requests (health, records, read-backs) still go straight to the
    target. The link's close is pushed on the stack's cleanup.
    """
    parts = urlsplit(stack.api_url)
    if LOAD in stack.services or parts.scheme != "http" or parts.hostname is None:
        return None
    upstream = Address(parts.hostname, parts.port or 80)
    link = start_link(run_dir, stack.target, upstream, timeout, protocol="http")
    stack.cleanup.callback(link.close)
    stack.links[(LOAD, stack.target)] = link
    stack.load_url = f"http://{link.address.host}:{link.address.port}{parts.path}"
    return link
