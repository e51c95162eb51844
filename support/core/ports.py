"""Free TCP ports on 127.0.0.1, and the sockets that listen on this machine."""

from __future__ import annotations

import socket
from pathlib import Path

__all__ = ["LOOPBACK", "free_port", "port_is_free", "listening_sockets"]

LOOPBACK = "127.0.0.1"


#: every port :func:`free_port` handed out in this process: the kernel may give a closed probe's port again
#: to the next probe, and a stack picks all its ports before its services bind them (the HA stack's
#: postgres3 once got a port another of its services already had)
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now and this process has not handed out before."""
    for _ in range(64):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    return port  # 64 repeats in a row: the range is nearly used up; the bind that follows will say so


def port_is_free(port: int) -> bool:
    """True when a listener could bind ``port`` on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


_LISTEN = "0A"  # the TCP state LISTEN in /proc/net/tcp; sockets in TIME_WAIT are not listeners


def listening_sockets() -> list[tuple[int, str]]:
    """(port, socket inode) of every TCP socket listening on any address, IPv4 or IPv6 (from /proc/net/tcp*)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == _LISTEN:
                found.append((int(fields[1].rsplit(":", 1)[1], 16), fields[9]))
    return found
