"""Running the fault proxy (:mod:`support.proxy.__main__`) as a child process and driving it over HTTP.

    server = ProxyServer.start(run_dir)                 # python -m support.proxy, own process group
    client = server.client()                            # or ProxyClient(server.control_url)
    pg = client.create_proxy("postgres", "127.0.0.1:5432")  # pg.port: where the API should connect
    client.add_toxic("postgres", "latency", latency=200, jitter=20)
    client.remove_toxic("postgres", "latency_downstream")
    client.set_enabled("postgres", False)               # the link is down
    client.reset()                                      # every proxy enabled, no toxic left
    server.stop()                                       # idempotent

Every call has an explicit timeout; every refusal is a :class:`ProxyError`
whose message is one line (unknown proxy, unknown toxic type with the valid
list, busy port, ...).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from support import REPO_ROOT
from support.core.run_dirs import child_env
from support.core.waiting import Deadline
from support.stack.services import Address

__all__ = ["ProxyServer", "ProxyClient", "ProxyInfo", "ToxicInfo", "ProxyError"]


class ProxyError(RuntimeError):
    """The proxy refused a request or could not be reached; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ToxicInfo:
    """A toxic as the proxy reports it (attributes in ms, KB/s or bytes)."""

    name: str
    type: str
    stream: str
    toxicity: float
    attributes: dict[str, Any]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ToxicInfo:
        return cls(data["name"], data["type"], data["stream"], float(data["toxicity"]), dict(data["attributes"]))


@dataclass(frozen=True)
class ProxyInfo:
    """A proxy as the proxy server reports it."""

    name: str
    host: str
    port: int
    upstream: str
    enabled: bool
    toxics: tuple[ToxicInfo, ...]
    protocol: str = "tcp"

    @property
    def address(self) -> Address:
        """Where clients connect to go through the proxy."""
        return Address(self.host, self.port)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProxyInfo:
        host, _, port = data["listen"].rpartition(":")
        return cls(
            data["name"],
            host,
            int(port),
            data["upstream"],
            bool(data["enabled"]),
            tuple(ToxicInfo.from_json(t) for t in data.get("toxics", [])),
            data.get("protocol", "tcp"),
        )


class ProxyClient:
    """A synchronous client of the proxy's Toxiproxy-style control API at ``control_url``."""

    def __init__(self, control_url: str, timeout: float = 5.0) -> None:
        self.control_url = control_url.rstrip("/")
        self._http = httpx.Client(base_url=self.control_url, timeout=httpx.Timeout(timeout), trust_env=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ProxyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as error:
            raise ProxyError(
                f"fault proxy at {self.control_url} did not answer {method} {path}: {type(error).__name__}: {error}"
            ) from None
        if response.status_code >= 400:
            try:
                message = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                message = response.text.strip().replace("\n", " ")[:200]
            raise ProxyError(f"fault proxy: {message}", response.status_code)
        return response.json() if response.content else None

    def version(self) -> str:
        return self._call("GET", "/version")["version"]

    def proxies(self) -> dict[str, ProxyInfo]:
        return {name: ProxyInfo.from_json(p) for name, p in self._call("GET", "/proxies").items()}

    def proxy(self, name: str) -> ProxyInfo:
        return ProxyInfo.from_json(self._call("GET", f"/proxies/{name}"))

    def create_proxy(
        self,
        name: str,
        upstream: str | Address | tuple[str, int],
        listen_port: int = 0,
        enabled: bool = True,
        protocol: str = "tcp",
    ) -> ProxyInfo:
        """Listen on 127.0.0.1:``listen_port`` (0 = a free port, in the answer) and forward to ``upstream``;
        ``protocol`` ``http`` frames requests so the HTTP toxics can act on them."""
        if not isinstance(upstream, str):
            upstream = f"{upstream[0]}:{upstream[1]}" if isinstance(upstream, tuple) else str(upstream)
        body = {
            "name": name,
            "listen": f"127.0.0.1:{listen_port}",
            "upstream": upstream,
            "enabled": enabled,
            "protocol": protocol,
        }
        return ProxyInfo.from_json(self._call("POST", "/proxies", body))

    def delete_proxy(self, name: str) -> None:
        """Remove a proxy: its connections are cut and its port released."""
        self._call("DELETE", f"/proxies/{name}")

    def set_enabled(self, proxy: str, enabled: bool) -> ProxyInfo:
        """False: the link is down (new connections refused, existing ones cut); True: up again."""
        return ProxyInfo.from_json(self._call("POST", f"/proxies/{proxy}", {"enabled": enabled}))

    def toxics(self, proxy: str) -> list[ToxicInfo]:
        return [ToxicInfo.from_json(t) for t in self._call("GET", f"/proxies/{proxy}/toxics")]

    def add_toxic(
        self,
        proxy: str,
        type: str,
        name: str | None = None,
        stream: str = "downstream",
        toxicity: float = 1.0,
        **attributes: int | str,
    ) -> ToxicInfo:
        """Add a toxic; ``name`` defaults to ``{type}_{stream}``, attributes as Toxiproxy (ms, KB/s, bytes)."""
        if type.startswith("http_"):
            stream = "upstream"  # an HTTP toxic acts on requests
        body: dict[str, Any] = {"type": type, "stream": stream, "toxicity": toxicity, "attributes": attributes}
        if name is not None:
            body["name"] = name
        return ToxicInfo.from_json(self._call("POST", f"/proxies/{proxy}/toxics", body))

    def update_toxic(self, proxy: str, name: str, toxicity: float | None = None, **attributes: int) -> ToxicInfo:
        """Change some attributes (and/or the toxicity) of a toxic; per-connection state restarts."""
        body: dict[str, Any] = {"attributes": attributes}
        if toxicity is not None:
            body["toxicity"] = toxicity
        return ToxicInfo.from_json(self._call("POST", f"/proxies/{proxy}/toxics/{name}", body))

    def remove_toxic(self, proxy: str, name: str, missing_ok: bool = False) -> None:
        """Remove a toxic; existing connections run at full speed again at once."""
        try:
            self._call("DELETE", f"/proxies/{proxy}/toxics/{name}")
        except ProxyError as error:
            if not (missing_ok and error.status == 404):
                raise

    def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        self._call("POST", "/reset")


class ProxyServer:
    """``python -m support.proxy`` as a child process in its own process group."""

    def __init__(self, process: subprocess.Popen, control_url: str, log_path: Path, loop: str = "asyncio") -> None:
        self._process: subprocess.Popen | None = process
        self.pid = process.pid
        self.loop = loop
        self.control_url = control_url
        self.log_path = log_path

    @classmethod
    def start(cls, workdir: Path, timeout: float = 10.0, control_port: int = 0, loop: str = "auto") -> ProxyServer:
        """Spawn the proxy server (log in ``workdir/proxy.log``); return once it said it is ready.

        ``loop``: ``auto`` (uvloop when installed), ``uvloop`` or ``asyncio``.
        The server exits by itself when this process dies, so a killed run leaves no proxy behind.
        """
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        log_path = workdir / "proxy.log"
        env = child_env(workdir)
        env.update({"PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"})
        argv = [
            sys.executable,
            "-m",
            "support.proxy",
            "--control",
            f"127.0.0.1:{control_port}",
            "--exit-with-parent",
            "--loop",
            loop,
        ]
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                argv,
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        try:
            ready = _read_ready_line(process, timeout, log_path)
        except BaseException:
            _stop_group(process, 2.0)
            raise
        finally:
            process.stdout.close()  # type: ignore[union-attr]  # the server writes nothing after its ready line
        return cls(process, ready["control_url"], log_path, ready.get("loop", "asyncio"))

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def client(self, timeout: float = 5.0) -> ProxyClient:
        return ProxyClient(self.control_url, timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the server's process group, SIGKILL after ``timeout`` s; reaped; idempotent."""
        if self._process is None:
            return
        process, self._process = self._process, None
        _stop_group(process, timeout)

    def __enter__(self) -> ProxyServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _read_ready_line(process: subprocess.Popen, timeout: float, log_path: Path) -> dict[str, Any]:
    deadline = Deadline(timeout)
    fd = process.stdout.fileno()  # type: ignore[union-attr]
    buffer = b""
    while b"\n" not in buffer:
        readable, _, _ = select.select([fd], [], [], deadline.remaining())
        if not readable:
            raise ProxyError(
                f"fault proxy (pid {process.pid}) did not say it was ready within {timeout:g} s; see {log_path}"
            )
        data = os.read(fd, 4096)
        if not data:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:]
            raise ProxyError(
                f"fault proxy exited with status {process.wait(2.0)} before it was ready: "
                f"{tail[0] if tail else 'no output'} (log: {log_path})"
            )
        buffer += data
    line = buffer.split(b"\n", 1)[0]
    try:
        ready = json.loads(line)
        if ready.get("ready") is True:
            return ready
    except ValueError:
        pass
    raise ProxyError(f"fault proxy printed {line[:200]!r} instead of its ready line")


def _stop_group(process: subprocess.Popen, timeout: float) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout)
