"""The ``locust`` load engine, seen from the suite: start Locust's master and workers behind a :class:`LoadRun`.

The master (:mod:`support.load.locust_master`) speaks the native worker's
protocol, so the run it gives back is the controller's own
:class:`support.load.controller.LoadRun`: the steps, the recovery wait, the
history and every checker work unchanged. This module never imports Locust:
Locust monkey-patches the process that imports it with gevent, so it runs only in
the master's and the workers' own processes.

Workers on other machines run, from a checkout of the same suite with its
``.venv`` (``bash setup.sh``)::

    .venv/bin/python -m locust -f support/load/locustfile.py --worker --master-host HOST --master-port PORT

with ``locust_master_bind = HOST:PORT`` (an address those machines reach; off
loopback it needs ``allow_remote_targets = true``) and ``locust_remote_workers``
saying how many such workers the master waits for before the load starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support import REPO_ROOT
from support.core.ports import free_port
from support.core.run_dirs import RUN_MARKER
from support.core.targets import TargetNotAllowed, check_target
from support.load.controller import LoadError, LoadRun
from support.load.spec import LoadSpec

__all__ = ["start_locust_load", "parse_bind", "worker_command"]


def parse_bind(bind: str, allow_remote: bool) -> tuple[str, int]:
    """``host:port`` of ``locust_master_bind`` (port 0: a free one now); :class:`LoadError` in one line if bad."""
    host, sep, port_text = bind.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise LoadError(f"locust_master_bind={bind!r} must be host:port, e.g. 127.0.0.1:5557 (port 0: a free one)")
    if not allow_remote:
        try:
            check_target(host, allow_remote)
        except TargetNotAllowed as error:
            raise LoadError(
                f"locust_master_bind={bind!r} is not on loopback ({error}); set allow_remote_targets=true"
                " to let workers on other machines connect"
            ) from None
    port = int(port_text) or free_port()
    return host, port


def worker_command(host: str, port: int) -> list[str]:
    """The command a Locust worker runs (from the suite's repository) to join a master at ``host:port``."""
    return [
        ".venv/bin/python",
        "-m",
        "locust",
        "-f",
        "support/load/locustfile.py",
        "--worker",
        "--master-host",
        host,
        "--master-port",
        str(port),
    ]


def start_locust_load(
    spec: LoadSpec,
    workdir: Path,
    *,
    workers: int,
    remote_workers: int = 0,
    bind: str = "127.0.0.1:0",
    ready_timeout: float = 60.0,
) -> LoadRun:
    """Start a Locust master and ``workers`` local Locust workers for ``spec``, waiting also for
    ``remote_workers`` started by hand; return once the load's schedule has started.

    Files as :func:`support.load.controller.start_load` (``load-<run_id>.json``,
    ``.log``, ``.csv``) and one log per local worker (``load-<run_id>-worker<n>.log``).
    :class:`LoadError` if it is not ready within ``ready_timeout`` s (every worker
    connected, clocks measured, logins done, users spawned).
    """
    spec.validate()
    host, port = parse_bind(bind, spec.allow_remote)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    stem = f"load-{spec.run_id}"
    spec_path, log_path, history_path = (workdir / f"{stem}{ext}" for ext in (".json", ".log", ".csv"))
    history_path.unlink(missing_ok=True)
    locust = {
        "local": workers,
        "remote": remote_workers,
        "bind_host": host,
        "bind_port": port,
        "log_dir": str(workdir),
        "stem": stem,
        "ready_timeout": ready_timeout,
    }
    spec_path.write_text(json.dumps({**spec.to_dict(), "output": str(history_path), "locust": locust}, indent=2))
    env = dict(os.environ)
    env[RUN_MARKER] = str(workdir)  # a later run finds and kills a master or worker that a killed run left
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    with open(log_path, "wb") as log:
        if remote_workers:
            shown = " ".join(worker_command(host, port))
            log.write(f"waiting for {remote_workers} remote worker(s): {shown}\n".encode())
            log.flush()
        proc = subprocess.Popen(
            [sys.executable, "-m", "support.load.locust_master", str(spec_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=REPO_ROOT,
            env=env,
            start_new_session=True,  # its own process group, which the local workers join: one kill takes all
        )
    run = LoadRun(spec, workdir, proc, history_path, log_path)
    run._wait_ready(ready_timeout + 10.0)
    return run
