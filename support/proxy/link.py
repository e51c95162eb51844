"""The network link between the API and PostgreSQL, through the suite's fault proxy.

The API never connects to PostgreSQL directly: its database URL points at a
proxy (:mod:`support.proxy`) that the suite controls, so the link can be slowed,
cut or reset in Toxiproxy's terms. The suite's own administrative connections
go straight to PostgreSQL, so a broken link never blinds the checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from support.proxy.client import ProxyClient, ProxyServer
from support.stack.services import Address

__all__ = ["Link", "start_link", "POSTGRES_LINK"]

POSTGRES_LINK = "postgres"


@dataclass
class Link:
    """One proxied link: ``address`` is where the client connects; ``client`` drives the proxy."""

    name: str
    server: ProxyServer
    client: ProxyClient
    address: Address
    upstream: Address

    def heal(self) -> None:
        """Enable the link and remove every toxic (idempotent)."""
        self.client.set_enabled(self.name, True)
        for toxic in self.client.toxics(self.name):
            self.client.remove_toxic(self.name, toxic.name, missing_ok=True)

    def close(self) -> None:
        """Stop the proxy process (idempotent)."""
        self.client.close()
        self.server.stop()


def start_link(run_dir: Path, name: str, upstream: Address, timeout: float = 10.0) -> Link:
    """Start a proxy process in ``run_dir`` and a proxy ``name`` to ``upstream`` on a free loopback port."""
    server = ProxyServer.start(run_dir, timeout=timeout)
    try:
        client = server.client()
        info = client.create_proxy(name, upstream)
    except BaseException:
        server.stop()
        raise
    return Link(name, server, client, info.address, upstream)
