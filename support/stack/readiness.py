"""Readiness in domain terms: PostgreSQL runs a query, an HTTP service answers a path, a port takes a
connection, a command exits 0 (the ``ready`` kinds of a stack file's services).

An answer counts only from the process the suite started: :func:`check_listener`
refuses a port held by any other process (an impostor that took the port
while the service could not bind it and restarted in a loop).
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import httpx

from support.core.ports import listening_sockets
from support.core.process_tree import descendants
from support.stack.database import connect

__all__ = [
    "database_answers",
    "query_answers",
    "http_answers",
    "http_ok",
    "tcp_answers",
    "command_succeeds",
    "check_listener",
    "ImpostorListening",
]


class ImpostorListening(ConnectionError):
    """Another process, not the service the suite started, listens on the service's port."""


def database_answers(dsn: str) -> bool:
    """True when ``SELECT 1`` runs on ``dsn`` within 2 s; raises the driver's error otherwise (no wait for a slot)."""
    with connect(dsn, 2.0, application_name="chaos-suite-probe", wait_for_slot=False) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        return cur.fetchone() == (1,)


def query_answers(dsn: str, sql: str) -> bool:
    """True when ``sql`` runs on ``dsn`` within 2 s without an error (a ``ready = { sql = ... }`` check)."""
    try:
        with connect(dsn, 2.0, application_name="chaos-suite-probe", wait_for_slot=False) as conn, conn.cursor() as cur:
            cur.execute(sql)
            return True
    except Exception:  # noqa: BLE001 - any driver error means "not yet"
        return False


def http_answers(url: str) -> bool:
    """True when ``GET url`` gets any HTTP answer within 1 s: the process is up, whatever it says of its database."""
    return httpx.get(url, timeout=1.0).status_code < 600


def http_ok(url: str) -> bool:
    """True when ``GET url`` answers 2xx within 1 s."""
    return 200 <= httpx.get(url, timeout=1.0).status_code < 300


def tcp_answers(host: str, port: int) -> bool:
    """True when a TCP connect to ``host:port`` succeeds within 1 s (raises the socket's error otherwise)."""
    with socket.create_connection((host, port), timeout=1.0):
        return True


def command_succeeds(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 5.0) -> bool:
    """True when ``argv`` exits 0 within ``timeout`` s (False when it fails or overruns; its output is dropped)."""
    try:
        return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, timeout=timeout).returncode == 0
    except (subprocess.TimeoutExpired, OSError):
        return False


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on TCP ``port`` (any address, IPv4 or IPv6)."""
    return {inode for listening, inode in listening_sockets() if listening == port}


def check_listener(port: int, root_pid: int | None, service: str) -> None:
    """Raise :class:`ImpostorListening` when what listens on ``port`` is not ``root_pid`` or a process below it.

    Returns when nothing listens yet (the domain check then fails by itself)
    and when the process table cannot be read (another user's processes:
    unknown counts as ours). ``root_pid`` None means the service is not running.
    """
    inodes = _listening_inodes(port)
    if not inodes:
        return
    if root_pid is not None:
        wanted = {f"socket:[{inode}]" for inode in inodes}
        for pid in [root_pid, *descendants(root_pid)]:
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except PermissionError:
                return
            except OSError:
                continue  # gone meanwhile
            for fd in fds:
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                        return
                except OSError:
                    continue
    state = "is not running" if root_pid is None else f"(pid {root_pid}) does not hold it"
    raise ImpostorListening(
        f"another process listens on {service}'s port {port} and {service} {state}: "
        "its answers are not the service's; stop that process"
    )
