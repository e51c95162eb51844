"""The fault proxy as a process: ``python -m support.proxy --control 127.0.0.1:0``.

It prints one JSON line ``{"ready": true, "control_url": ..., "port": ...,
"pid": ..., "loop": ...}`` once the control API listens, then serves until
SIGTERM or SIGINT (or, with ``--exit-with-parent``, until its parent is gone).
:class:`support.proxy.client.ProxyServer` starts it so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable

from support.proxy.control import FaultProxyServer, parse_address
from support.proxy.relay import LOOPBACK
from support.proxy.toxics import ProxyApiError

__all__ = ["main"]


async def _serve(control: tuple[str, int], exit_with_parent: bool, loop_name: str) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = FaultProxyServer(*control)
    port = await server.start()
    print(
        json.dumps(
            {
                "ready": True,
                "control_url": f"http://{control[0]}:{port}",
                "port": port,
                "pid": os.getpid(),
                "loop": loop_name,
            }
        ),
        flush=True,
    )
    parent = os.getppid()
    try:
        while not stop.is_set():
            # a killed suite must not leave its proxy behind: leave when the parent is gone
            if exit_with_parent and os.getppid() != parent:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m support.proxy --control 127.0.0.1:PORT [--exit-with-parent]``."""
    parser = argparse.ArgumentParser(
        prog="python -m support.proxy",
        description="A TCP fault proxy for the links between services, in Toxiproxy's vocabulary.",
    )
    parser.add_argument("--control", default=f"{LOOPBACK}:8474", help="host:port of the control API (port 0 = free)")
    parser.add_argument("--exit-with-parent", action="store_true", help="exit when the parent process dies")
    parser.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="event loop; auto = uvloop when installed (about half the per-message overhead)",
    )
    args = parser.parse_args(argv)
    try:
        control = parse_address(args.control, "--control")
    except ProxyApiError as error:
        parser.error(str(error))
    loop_name, loop_factory = _event_loop(args.loop)
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve(control, args.exit_with_parent, loop_name))
    return 0


def _event_loop(choice: str) -> tuple[str, Callable[[], asyncio.AbstractEventLoop] | None]:
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise SystemExit("--loop uvloop: uvloop is not installed (pip install uvloop)") from None
        else:
            return "uvloop", uvloop.new_event_loop
    return "asyncio", None


if __name__ == "__main__":
    sys.exit(main())
