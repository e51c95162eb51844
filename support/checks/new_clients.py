"""New clients during a descriptor limit: was each one served, or refused with a 503?

A service at its descriptor limit cannot accept a client without a descriptor
kept in reserve for it; the clients of the load keep their connections alive
and never see that. :class:`support.faults.descriptors.NewClients` connects new
ones while the limit holds; this judges what they got. A client may be served
(the process had a descriptor free at that moment: one of its own closed, a
database connection that died); one that is not must get a 503, not a reset,
another 5xx, or a wait past its timeout. Times are monotonic
seconds; a client's wait runs from its connect to its status line.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from support.checks.messages import no_fault, plural, seconds
from support.checks.verdict import CheckFailed
from support.faults.base import Fault
from support.faults.descriptors import DescriptorLimit, NewClient

__all__ = ["check_new_clients_answered_503", "new_clients_of"]


def new_clients_of(faults: Iterable[Fault]) -> tuple[float, list[NewClient]]:
    """The injection time of the first descriptor limit with new clients, and the clients of every such fault
    (:class:`CheckFailed` when the scenario made none)."""
    limits = [f for f in faults if isinstance(f, DescriptorLimit) and f.new_clients is not None]
    if not limits:
        raise CheckFailed(
            no_fault(
                "no new client to judge: use 'When api cannot open more than N files for N seconds while"
                " new clients connect' before this step"
            )  # fmt: skip
        )
    since = min(f.active_since or 0.0 for f in limits)
    return since, [c for f in limits for c in (f.new_clients.clients if f.new_clients else [])]


def check_new_clients_answered_503(faults: Iterable[Fault]) -> None:
    """Fail unless every judged new client got an answer, a 503 when it was not served (any other 5xx, a
    reset or no answer within its wait fails), and at least one was refused with 503 (else the limit never bit).
    """
    since, clients = new_clients_of(faults)
    if not clients:
        raise CheckFailed(
            "no new client ended while the descriptor limit held, so none was refused: hold the limit for"
            " longer than a new client waits (2 s)"
        )
    wrong = [c for c in clients if c.status is None or (c.status >= 500 and c.status != 503)]
    if wrong:
        counts = Counter(f"status {c.status}" if c.status is not None else c.error for c in wrong)
        first = min(wrong, key=lambda c: c.start)
        raise CheckFailed(
            f"{len(wrong)} of {plural(len(clients), 'new client')} not answered with 503 while the descriptor"
            " limit held: "
            + ", ".join(f"{what} x{n}" for what, n in counts.most_common())
            + f"; first: connected {seconds(first.start - since)} into the limit, "
            + (f"status {first.status}" if first.status is not None else first.error)
            + f" after {seconds(first.end - first.start)}"
        )
    if not any(c.status == 503 for c in clients):
        raise CheckFailed(
            f"none of the {plural(len(clients), 'new client')} was refused: each was served, so the descriptor"
            " limit never bit; give fewer files than the service holds"
        )
