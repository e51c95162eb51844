"""HTTP faults on a link that carries HTTP/1.1, in Chaos Mesh HTTPChaos's vocabulary: abort, delay, replace.

Each is an ``http_*`` toxic on a link made with ``protocol = "http"`` (the load's
link to the workload's target is one: :func:`support.proxy.link.add_load_link`);
the proxy decides per request (:mod:`support.proxy.http_mode`). The heal removes the
toxic: requests the proxy is holding go on at once. Nothing outlives the run:
the proxy process exits with the suite.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from support.faults.network import LinkFault
from support.proxy.link import Link

__all__ = ["HttpFault", "HttpFaultRefused", "http_abort", "http_delay", "http_replace"]


class HttpFaultRefused(AssertionError):
    """An HTTP fault that cannot be made as asked (a plain TCP link, a share out of range); one line.

    An ``AssertionError`` so behave fails the scenario with the line, not a traceback.
    """


@dataclass
class HttpFault(LinkFault):
    """One HTTP toxic on a link: ``kind`` is ``abort``, ``delay`` or ``replace``, on ``percent`` % of the requests
    that ``method`` (empty: any) and ``path`` (a glob; empty: any) select; ``attributes`` as the proxy takes them
    (``delay`` ms; ``status`` and ``retry_after`` s)."""

    kind: str
    percent: float = 100.0
    method: str = ""
    path: str = ""
    attributes: dict | None = None
    instant: bool = False

    @property
    def name(self) -> str:
        shown = {"delay": lambda a: f"delay {a['delay']} ms", "replace": lambda a: f"answered {a['status']}"}
        what = shown.get(self.kind, lambda a: "aborted")(self.attributes or {})
        scope = " ".join(part for part in (self.method.upper(), self.path) if part)
        return f"HTTP {what} ({self.percent:g}% of {scope + ' ' if scope else ''}requests)"

    @property
    def toxic_name(self) -> str:
        return f"chaos_http_{self.kind}"

    def inject(self) -> None:
        self.link.client.add_toxic(
            self.link.name,
            f"http_{self.kind}",
            name=self.toxic_name,
            toxicity=self.percent / 100.0,
            method=self.method,
            path=self.path,
            **(self.attributes or {}),
        )
        self.active_since = time.monotonic()

    def heal(self) -> None:
        self.mark_effect_over()
        self.link.client.remove_toxic(self.link.name, self.toxic_name, missing_ok=True)


def _checked(link: Link, percent: float) -> float:
    if link.protocol != "http":
        raise HttpFaultRefused(
            f"the {link.name} link carries plain TCP, not HTTP: HTTP faults act on an HTTP link "
            "(the load's link to the workload's target, e.g. from load to api, or a link to a service whose "
            'stack file table says protocol = "http")'
        )
    if not 0 < percent <= 100:
        raise HttpFaultRefused(f"a share of requests is more than 0% and at most 100%, not {percent:g}%")
    return percent


def http_abort(link: Link, percent: float = 100.0, method: str = "", path: str = "") -> HttpFault:
    """``percent`` % of the selected requests close their connection unanswered (the service never sees them)."""
    return HttpFault(link, "abort", _checked(link, percent), method, path, {})


def http_delay(link: Link, ms: float, percent: float = 100.0, method: str = "", path: str = "") -> HttpFault:
    """``percent`` % of the selected requests are held ``ms`` milliseconds before they go on to the service."""
    return HttpFault(link, "delay", _checked(link, percent), method, path, {"delay": int(ms)})


def http_replace(
    link: Link, status: int, percent: float = 100.0, retry_after: int = 0, method: str = "", path: str = ""
) -> HttpFault:
    """``percent`` % of the selected requests are answered ``status`` (with ``Retry-After: retry_after`` s when > 0)
    in the service's place; the service never sees them."""
    if not 200 <= status <= 599:
        raise HttpFaultRefused(f"an HTTP status is from 200 to 599, not {status}")
    return HttpFault(
        link, "replace", _checked(link, percent), method, path, {"status": status, "retry_after": retry_after}
    )
