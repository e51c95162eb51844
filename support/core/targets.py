"""The one guard on where the suite may send faults and load: the loopback interface.

A host is judged by the addresses it resolves to, never by how its name looks:
``127.attacker.example`` is a name like any other, and a name is allowed only
when every address it resolves to is a loopback address (``127.0.0.0/8``,
``::1``, or an IPv4-mapped ``::ffff:127.x.y.z``). The unspecified address
``0.0.0.0`` is not a target. Users who own a remote stack opt in with
``allow_remote_targets``.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from typing import Any

__all__ = ["TargetNotAllowed", "RESOLVE_TIMEOUT", "check_target", "resolve"]

#: seconds a name may take to resolve before the target is refused (a hung resolver must not hang the start)
RESOLVE_TIMEOUT = 3.0

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetNotAllowed(ValueError):
    """A target is not on the loopback interface; the message says why, in one line (no fix: callers add theirs)."""


def resolve(host: str, timeout: float = RESOLVE_TIMEOUT) -> list[Address]:
    """Every address ``host`` (a name or a literal, brackets allowed) resolves to, within ``timeout`` seconds.

    Raises :class:`TargetNotAllowed` when it does not resolve in time.
    """
    name = host.strip().removeprefix("[").removesuffix("]")
    try:
        return [ipaddress.ip_address(name.split("%", 1)[0])]
    except ValueError:
        pass  # a name, not a literal
    found: dict[str, Any] = {}

    def lookup() -> None:
        try:
            found["infos"] = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError) as error:
            found["error"] = error

    # getaddrinfo has no timeout of its own: it runs in a daemon thread the start does not wait for
    worker = threading.Thread(target=lookup, name=f"resolve {name}", daemon=True)
    worker.start()
    worker.join(timeout)
    if "infos" in found:
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in found["infos"]]
        if addresses:
            return list(dict.fromkeys(addresses))
    why = found.get("error") or f"no answer within {timeout:g} s"
    raise TargetNotAllowed(f"the name {name!r} does not resolve ({why}), so it cannot be shown to be on 127.0.0.1")


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip().removeprefix("[").removesuffix("]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def _loopback(address: Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def check_target(host: str, allow_remote: bool, timeout: float = RESOLVE_TIMEOUT) -> None:
    """Refuse ``host`` unless every address it resolves to is a loopback address (or ``allow_remote``).

    Raises :class:`TargetNotAllowed` with the reason; resolving takes at most ``timeout`` seconds.
    """
    if allow_remote:
        return
    if not host or not host.strip():
        raise TargetNotAllowed("no host is given, so it cannot be shown to be on 127.0.0.1")
    addresses = resolve(host, timeout)
    outside = [str(a) for a in addresses if not _loopback(a)]
    if not outside:
        return
    if any(a.is_unspecified for a in addresses):
        raise TargetNotAllowed(f"{outside[0]} is the unspecified address, not a host; it is not on 127.0.0.1")
    raise TargetNotAllowed(
        "it is not on 127.0.0.1"
        if _is_literal(host)
        else f"it resolves to {', '.join(outside)}, which is not on 127.0.0.1"
    )
