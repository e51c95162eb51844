"""The control API: every proxy behind a subset of Toxiproxy's HTTP API, in one event loop.

No Toxiproxy server can be installed here, so :class:`FaultProxyServer` is a
small asyncio one that speaks a subset of its HTTP API (``GET /version``,
``/proxies``, ``/proxies/{name}``, ``/proxies/{name}/toxics[/{toxic}]``,
``POST /reset``). Its methods are the API itself (usable in-process); the HTTP
handlers are thin JSON wrappers over them, and every refusal is a
:class:`~support.proxy.toxics.ProxyApiError` answered as ``{"error", "status"}``.

In-process: ``server = FaultProxyServer(); await server.start(); ...; await server.stop()``.
As a process: ``python -m support.proxy`` (:mod:`support.proxy.__main__`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from aiohttp import web

from support.proxy.relay import LOOPBACK, Proxy
from support.proxy.toxics import ProxyApiError, Toxic, make_toxic

__all__ = ["FaultProxyServer", "VERSION", "parse_address"]

VERSION = "chaos-suite-proxy 1.0 (toxiproxy API subset)"


def parse_address(text: Any, what: str) -> tuple[str, int]:
    """``host:port`` on loopback as ``(host, port)`` (``localhost`` = 127.0.0.1); 400 otherwise."""
    if not isinstance(text, str) or ":" not in text:
        raise ProxyApiError(400, f"{what} must be 'host:port', not {text!r}")
    host, _, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ProxyApiError(400, f"{what} {text!r} has no valid port")
    if host == "localhost":
        host = LOOPBACK
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ProxyApiError(400, f"{what} {text!r} is not on loopback; this proxy only serves 127.0.0.1")
    return host, int(port_text)


class FaultProxyServer:
    """Every proxy plus the Toxiproxy-style HTTP control API, in one event loop.

    The methods are the API itself (usable in-process); :meth:`start` also
    serves them over HTTP on ``control_host:control_port`` (0 = a free port).
    """

    def __init__(self, control_host: str = LOOPBACK, control_port: int = 0) -> None:
        self.control_host = control_host
        self.control_port = control_port
        self.proxies: dict[str, Proxy] = {}
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        """Serve the control API; return its port."""
        app = web.Application(middlewares=[_errors_as_json])
        route = app.router.add_route
        route("GET", "/version", self._h_version)
        route("GET", "/proxies", self._h_proxies)
        route("POST", "/proxies", self._h_create)
        route("POST", "/reset", self._h_reset)
        route("GET", "/proxies/{proxy}", self._h_proxy)
        route("POST", "/proxies/{proxy}", self._h_update)
        route("DELETE", "/proxies/{proxy}", self._h_delete)
        route("GET", "/proxies/{proxy}/toxics", self._h_toxics)
        route("POST", "/proxies/{proxy}/toxics", self._h_add_toxic)
        route("GET", "/proxies/{proxy}/toxics/{toxic}", self._h_toxic)
        route("POST", "/proxies/{proxy}/toxics/{toxic}", self._h_update_toxic)
        route("DELETE", "/proxies/{proxy}/toxics/{toxic}", self._h_remove_toxic)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.control_host, self.control_port, reuse_address=True)
        await site.start()
        self.control_port = self._runner.addresses[0][1]
        return self.control_port

    async def stop(self) -> None:
        """Close every proxy (connections cut, ports released) and the control API; idempotent."""
        for proxy in list(self.proxies.values()):
            await proxy.close()
        self.proxies.clear()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    # the API, in-process
    def proxy(self, name: str) -> Proxy:
        try:
            return self.proxies[name]
        except KeyError:
            raise ProxyApiError(
                404, f"no proxy named {name!r} (proxies: {', '.join(self.proxies) or 'none'})"
            ) from None

    async def create_proxy(self, data: dict[str, Any]) -> Proxy:
        """Create from Toxiproxy's JSON: ``name``, ``upstream``, ``listen`` (port 0 = free), ``enabled``, and
        ``protocol`` (this proxy's own: ``tcp``, the default, or ``http`` for the HTTP toxics)."""
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("name"), str)
            or not data["name"]
            or "/" in data["name"]
        ):
            raise ProxyApiError(400, "a proxy needs a 'name' (a string without '/')")
        name = data["name"]
        if name in self.proxies:
            raise ProxyApiError(409, f"proxy {name!r} already exists")
        upstream = parse_address(data.get("upstream"), "upstream")
        _, listen_port = parse_address(data.get("listen", f"{LOOPBACK}:0"), "listen")
        protocol = data.get("protocol", "tcp")
        if protocol not in ("tcp", "http"):
            raise ProxyApiError(400, f"protocol must be 'tcp' or 'http', not {protocol!r}")
        proxy = Proxy(name, upstream, listen_port, protocol)
        self.proxies[name] = proxy
        await proxy.set_enabled(bool(data.get("enabled", True)))
        return proxy

    async def update_proxy(self, name: str, data: dict[str, Any]) -> Proxy:
        """Change ``enabled`` and/or ``upstream`` (new connections); ``listen`` cannot change."""
        proxy = self.proxy(name)
        if not isinstance(data, dict):
            raise ProxyApiError(400, "a proxy update is a JSON object")
        if "listen" in data and parse_address(data["listen"], "listen")[1] not in (0, proxy.port):
            raise ProxyApiError(400, f"proxy {name!r} keeps its listen port {proxy.port} for its whole life")
        if "upstream" in data:
            proxy.upstream = parse_address(data["upstream"], "upstream")
        if "enabled" in data:
            if not isinstance(data["enabled"], bool):
                raise ProxyApiError(400, f"enabled must be true or false, not {data['enabled']!r}")
            await proxy.set_enabled(data["enabled"])
        return proxy

    async def delete_proxy(self, name: str) -> None:
        await self.proxy(name).close()
        del self.proxies[name]

    def add_toxic(self, proxy_name: str, data: dict[str, Any]) -> Toxic:
        proxy = self.proxy(proxy_name)
        toxic = make_toxic(data)
        if toxic.type.startswith("http_") and proxy.protocol != "http":
            raise ProxyApiError(
                400,
                f"proxy {proxy_name!r} carries plain TCP; a {toxic.type} toxic needs a proxy made with protocol http",
            )
        if toxic.name in proxy.toxics:
            raise ProxyApiError(409, f"proxy {proxy_name!r} already has a toxic named {toxic.name!r}")
        proxy.set_toxic(toxic)
        return toxic

    def toxic(self, proxy_name: str, toxic_name: str) -> Toxic:
        proxy = self.proxy(proxy_name)
        try:
            return proxy.toxics[toxic_name]
        except KeyError:
            raise ProxyApiError(
                404,
                f"proxy {proxy_name!r} has no toxic named {toxic_name!r} (toxics: {', '.join(proxy.toxics) or 'none'})",
            ) from None

    def update_toxic(self, proxy_name: str, toxic_name: str, data: dict[str, Any]) -> Toxic:
        base = self.toxic(proxy_name, toxic_name)
        if isinstance(data, dict) and data.get("name", toxic_name) != toxic_name:
            raise ProxyApiError(400, "a toxic cannot be renamed; remove it and add another")
        if isinstance(data, dict) and data.get("stream", base.stream) != base.stream:
            raise ProxyApiError(400, "a toxic's stream cannot change; remove it and add another")
        toxic = make_toxic(data, base)
        self.proxy(proxy_name).set_toxic(toxic)
        return toxic

    def remove_toxic(self, proxy_name: str, toxic_name: str) -> None:
        self.toxic(proxy_name, toxic_name)
        self.proxy(proxy_name).remove_toxic(toxic_name)

    async def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        for proxy in self.proxies.values():
            proxy.remove_all_toxics()
            await proxy.set_enabled(True)

    # HTTP handlers: thin JSON wrappers over the methods above
    async def _h_version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": VERSION})

    async def _h_proxies(self, request: web.Request) -> web.Response:
        return web.json_response({name: p.to_json() for name, p in self.proxies.items()})

    async def _h_create(self, request: web.Request) -> web.Response:
        proxy = await self.create_proxy(await _json_body(request))
        return web.json_response(proxy.to_json(), status=201)

    async def _h_reset(self, request: web.Request) -> web.Response:
        await self.reset()
        return web.Response(status=204)

    async def _h_proxy(self, request: web.Request) -> web.Response:
        return web.json_response(self.proxy(request.match_info["proxy"]).to_json())

    async def _h_update(self, request: web.Request) -> web.Response:
        proxy = await self.update_proxy(request.match_info["proxy"], await _json_body(request))
        return web.json_response(proxy.to_json())

    async def _h_delete(self, request: web.Request) -> web.Response:
        await self.delete_proxy(request.match_info["proxy"])
        return web.Response(status=204)

    async def _h_toxics(self, request: web.Request) -> web.Response:
        proxy = self.proxy(request.match_info["proxy"])
        return web.json_response([t.to_json() for t in proxy.toxics.values()])

    async def _h_add_toxic(self, request: web.Request) -> web.Response:
        toxic = self.add_toxic(request.match_info["proxy"], await _json_body(request))
        return web.json_response(toxic.to_json())

    async def _h_toxic(self, request: web.Request) -> web.Response:
        return web.json_response(self.toxic(request.match_info["proxy"], request.match_info["toxic"]).to_json())

    async def _h_update_toxic(self, request: web.Request) -> web.Response:
        toxic = self.update_toxic(request.match_info["proxy"], request.match_info["toxic"], await _json_body(request))
        return web.json_response(toxic.to_json())

    async def _h_remove_toxic(self, request: web.Request) -> web.Response:
        self.remove_toxic(request.match_info["proxy"], request.match_info["toxic"])
        return web.Response(status=204)


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise ProxyApiError(400, "the request body is not valid JSON") from None


@web.middleware
async def _errors_as_json(request: web.Request, handler: Callable) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProxyApiError as error:
        return web.json_response({"error": str(error), "status": error.status}, status=error.status)
    except web.HTTPException as error:
        return web.json_response(
            {"error": f"{request.method} {request.path}: {error.reason}", "status": error.status}, status=error.status
        )
