"""What load to send: :class:`LoadSpec`, validated when it is made, and its error.

The controller writes a spec to a JSON file for the worker, which reads it back
with :meth:`LoadSpec.from_dict`; both validate it the same way.
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal
from urllib.parse import urlsplit

from support.core.targets import TargetNotAllowed, check_target
from support.stack.operations import WorkloadError
from support.stack.workload import Workload

__all__ = ["LoadSpec", "LoadSpecError"]

_RUN_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


class LoadSpecError(ValueError):
    """A load spec is malformed; the one-line message says which field and why."""


@dataclass(frozen=True)
class LoadSpec:
    """What load to send, and for how long at most.

    ``model`` ``"open"`` launches ``rate`` requests per second on a fixed
    schedule whatever the answers; ``"closed"`` runs ``users`` concurrent users,
    each sending its next request when its last one ends (after ``think_time`` s).
    ``write_fraction`` (0..1) of requests create records, the rest read back records
    whose creation was acknowledged, when the workload is in today's flat form (its
    operations carry no weights); otherwise the operations' weights decide. ``request_timeout`` (s) bounds each request;
    ``max_duration`` (s) bounds the schedule (the worker then waits up to
    ``request_timeout`` for answers, writes its history and exits by itself).
    ``max_in_flight`` bounds open requests: past it a request is recorded as
    ``fail`` with error ``"client overloaded"``. ``run_id`` prefixes every key
    (lower-case letters, digits and dashes, since it goes into an email).
    ``progress_interval`` (s) is how often the worker reports. ``malformed_share``
    (0..1) of the requests sent from ``malformed_after`` s into the load on are
    malformed (:mod:`support.load.malformed`). ``workload``
    describes the requests (:class:`support.stack.workload.Workload`, checked here so a
    bad one is refused before a worker starts). ``base_url``
    must be on loopback unless ``allow_remote`` is set.
    """

    base_url: str
    model: Literal["open", "closed"] = "open"
    rate: float = 50.0
    users: int = 10
    write_fraction: float = 0.5
    request_timeout: float = 5.0
    max_duration: float = 300.0
    max_in_flight: int = 1000
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    think_time: float = 0.0
    seed: int | None = None
    progress_interval: float = 0.5
    allow_remote: bool = False
    malformed_share: float = 0.0
    malformed_after: float = 0.0
    #: what a write and a read are (:class:`support.stack.workload.Workload` as a dict); empty = the reference API's
    workload: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # -- constructors -------------------------------------------------------
    @classmethod
    def open_rate(cls, base_url: str, rate: float, **options: Any) -> LoadSpec:
        """An open-model load of ``rate`` requests per second."""
        return cls(base_url=base_url, model="open", rate=rate, **options)

    @classmethod
    def closed_users(cls, base_url: str, users: int, **options: Any) -> LoadSpec:
        """A closed-model load of ``users`` concurrent users."""
        return cls(base_url=base_url, model="closed", users=users, **options)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadSpec:
        """Build from a plain dict (e.g. parsed JSON); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise LoadSpecError(f"load spec: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """The spec as a JSON-able dict."""
        return asdict(self)

    def with_(self, **changes: Any) -> LoadSpec:
        """A copy with some fields changed (and validated)."""
        return replace(self, **changes)

    # -- validation -----------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`LoadSpecError` naming the first bad field."""

        def bad(name: str, why: str) -> LoadSpecError:
            return LoadSpecError(f"load spec: {name}={getattr(self, name)!r} {why}")

        parts = urlsplit(self.base_url) if isinstance(self.base_url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise bad("base_url", "must be an http(s) URL such as http://127.0.0.1:8000")
        try:
            check_target(parts.hostname, self.allow_remote)
        except TargetNotAllowed as error:
            raise bad(
                "base_url", f"is not on loopback (127.0.0.1): {error}; set allow_remote=True to load another host"
            ) from None
        if self.model not in ("open", "closed"):
            raise bad("model", "must be 'open' or 'closed'")
        if not _finite(self.rate) or self.rate <= 0:
            raise bad("rate", "must be a number of requests per second > 0")
        if not isinstance(self.users, int) or isinstance(self.users, bool) or self.users < 1:
            raise bad("users", "must be an integer >= 1")
        if not _finite(self.write_fraction) or not 0 <= self.write_fraction <= 1:
            raise bad("write_fraction", "must be between 0 and 1")
        for name in ("request_timeout", "max_duration", "progress_interval"):
            if not _finite(getattr(self, name)) or getattr(self, name) <= 0:
                raise bad(name, "must be a number of seconds > 0")
        if not _finite(self.malformed_share) or not 0 <= self.malformed_share < 1:
            raise bad("malformed_share", "must be a share from 0 up to (not including) 1")
        if not _finite(self.malformed_after) or self.malformed_after < 0:
            raise bad("malformed_after", "must be a number of seconds >= 0")
        if not _finite(self.think_time) or self.think_time < 0:
            raise bad("think_time", "must be a number of seconds >= 0")
        if not isinstance(self.max_in_flight, int) or isinstance(self.max_in_flight, bool) or self.max_in_flight < 1:
            raise bad("max_in_flight", "must be an integer >= 1")
        if self.model == "closed" and self.users > self.max_in_flight:
            raise bad("users", f"exceeds max_in_flight={self.max_in_flight}")
        if not isinstance(self.run_id, str) or not _RUN_ID.match(self.run_id):
            raise bad("run_id", "must be 1-40 lower-case letters, digits or dashes, starting with a letter or digit")
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool)):
            raise bad("seed", "must be an integer or None")
        if not isinstance(self.workload, dict):
            raise bad("workload", "must be a dict (Workload.to_dict())")
        if self.workload:
            try:
                Workload.from_dict(self.workload)
            except WorkloadError as error:
                raise LoadSpecError(f"load spec: workload: {error}") from None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
