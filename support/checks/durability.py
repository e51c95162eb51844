"""Durability: what became of the load's writes once read back from the database."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from support.checks.messages import NO_LOAD, keys, plural
from support.checks.verdict import CheckFailed
from support.load.history import INFO, OK, Request

__all__ = ["Durability", "written_keys", "durability", "check_no_lost_writes"]


@dataclass(frozen=True)
class Durability:
    """What became of the history's writes once read back from the database.

    ``acknowledged`` counts keys written with an ``ok`` answer; ``lost`` and
    ``changed`` list those missing or with other content (violations);
    ``info_present``/``info_absent`` count keys whose writes all had an
    unknown (``info``) outcome and that exist / do not exist (either is
    allowed); ``fail_present`` lists keys whose writes were all answered as not
    applied and that exist anyway (a violation).
    """

    acknowledged: int
    lost: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    info_present: int = 0
    info_absent: int = 0
    fail_present: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no acknowledged write is lost or changed and no refused write appeared."""
        return not (self.lost or self.changed or self.fail_present)


def written_keys(history: Sequence[Request]) -> list[str]:
    """The keys (emails) of every write the history attempted, whatever its outcome, in order."""
    return list(dict.fromkeys(r.key for r in history if r.op == "write"))


def durability(history: Sequence[Request], rows: Mapping[str, Sequence[str]]) -> Durability:
    """Compare the history's writes with ``rows``: key -> the compared columns as read back by SQL.

    A key's writes are judged together: any ``ok`` write makes it acknowledged,
    and its stored content must equal the compared fields of its last ``ok``
    write (``Request.body``: the workload's ``compare`` values, tab-separated);
    otherwise any ``info`` write makes it unknown; otherwise (only ``fail``
    writes) it must be absent. Rows for keys the history never
    wrote are ignored (the caller selects the rows).
    """
    by_key: dict[str, list[Request]] = {}
    for r in history:
        if r.op == "write":
            by_key.setdefault(r.key, []).append(r)
    acknowledged = 0
    lost: list[str] = []
    changed: list[str] = []
    fail_present: list[str] = []
    info_present = info_absent = 0
    for key, writes in by_key.items():
        oks = [w for w in writes if w.outcome == OK]
        present = key in rows
        if oks:
            acknowledged += 1
            expected = tuple(max(oks, key=lambda w: w.start).body.split("\t"))
            if not present:
                lost.append(key)
            elif tuple(rows[key]) != expected:
                changed.append(key)
        elif any(w.outcome == INFO for w in writes):
            if present:
                info_present += 1
            else:
                info_absent += 1
        elif present:
            fail_present.append(key)
    return Durability(
        acknowledged=acknowledged,
        lost=lost,
        changed=changed,
        info_present=info_present,
        info_absent=info_absent,
        fail_present=fail_present,
    )


def check_no_lost_writes(durability: Durability | None) -> None:
    """Fail if an acknowledged write is missing or changed, or a write answered as not applied exists."""
    if durability is None:
        raise CheckFailed(NO_LOAD)
    problems = []
    if durability.lost:
        problems.append(f"{plural(len(durability.lost), 'acknowledged write')} lost: {keys(durability.lost)}")
    if durability.changed:
        problems.append(f"{plural(len(durability.changed), 'acknowledged write')} changed: {keys(durability.changed)}")
    if durability.fail_present:
        problems.append(
            f"{plural(len(durability.fail_present), 'write')} answered as not applied exist anyway:"
            f" {keys(durability.fail_present)}"
        )
    if problems:
        raise CheckFailed(
            "; ".join(problems) + f" (of {durability.acknowledged} acknowledged writes;"
            f" unknown writes: {durability.info_present} present, {durability.info_absent} absent)"
        )
