"""The workload the suite drives through a service: its operations, and how a record is read back and found by SQL.

The reference API's workload is the default; a stack file's ``[workload]`` describes
any other service's (:func:`parse_workload`). It names the ``target`` service, the
``records`` noun the scenarios use ("Given 3 notes exist"), the ``table`` they live
in, a ``base_path`` every request goes under, static ``headers`` (``{run}`` and
``{env.NAME}`` filled where the requests are sent), an ``auth``
(:mod:`support.stack.auth`) and one or more weighted ``operations``:

- a **write** (it has ``find_sql``) creates a record from ``key_template`` and
  ``name_template`` and says how it is read back (``read``: path with ``{id}``,
  the ``id_field`` of the create answer, the ``compare``\\ d body fields) and found
  by SQL, so durability is judged on the database;
- a **read-back** (``reads = "create"``) reads a record a write acknowledged;
- any other operation is a plain request, judged by its status; its body is sent
  as written, ``{run}`` filled in.

Today's flat keys (``create_path``, ``create_body``, ``read_path``, ``compare``,
``find_sql``, ...) stay valid: one write plus one read-back, weighted by the
``load_write_fraction`` setting. Templates are plain strings in which ``{key}``
(unique per record), ``{name}``, ``{run}`` and ``{seq}`` are replaced.
Everything here is JSON-able (:meth:`Workload.to_dict`), since it travels to the
load worker's process.

The operations themselves (:class:`~support.stack.operations.Operation`,
:class:`~support.stack.operations.ReadBack`), their parsing and checks live in
:mod:`support.stack.operations`; they stay importable from here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from support.stack.auth import Auth, parse_auth
from support.stack.operations import (
    FLAT_KEYS,
    Operation,
    ReadBack,
    WorkloadError,
    check_operations,
    flat_operations,
    parse_operation,
    render,
)

# Operation, ReadBack, render and WorkloadError live in support.stack.operations; re-exported here
__all__ = ["Workload", "Operation", "ReadBack", "render", "WorkloadError", "parse_workload"]


_ENV_PLACEHOLDER = re.compile(r"\{(env\.[A-Za-z_][A-Za-z0-9_]*)\}")
_KEYS = {
    "target",
    "records",
    "table",
    "base_path",
    "headers",
    "auth",
    "operations",
    "reset_sql",
    "count_sql",
    "processed_sql",
}


@dataclass(frozen=True, init=False)
class Workload:
    """What the suite sends to the target service, and how it finds what it wrote."""

    target: str
    records: str
    table: str
    base_path: str
    headers: dict
    auth: Auth | None
    operations: tuple[Operation, ...]
    #: SQL that empties what the workload writes, run before each scenario
    reset_sql: str
    #: SQL counting the records, for "exactly N are stored"
    count_sql: str
    #: SQL returning, of the keys in %(keys)s, those a background worker has processed (empty: none is declared)
    processed_sql: str

    def __init__(
        self,
        operations: Any = None,
        *,
        target: str = "api",
        records: str = "users",
        table: str = "",
        base_path: str = "",
        headers: dict | None = None,
        auth: Auth | None = None,
        reset_sql: str = "TRUNCATE users RESTART IDENTITY",
        count_sql: str = "SELECT count(*) FROM users",
        processed_sql: str = "",
        **flat: Any,
    ) -> None:
        """Either ``operations`` or today's flat keys (``create_path=...``: one write and one read-back)."""
        unknown = sorted(set(flat) - FLAT_KEYS)
        if unknown:
            raise WorkloadError(
                f"unknown workload field(s) {', '.join(unknown)}; valid: {', '.join(sorted(_KEYS | FLAT_KEYS))}"
            )
        if operations is not None and flat:
            raise WorkloadError(
                f"[[workload.operations]] and the flat keys ({', '.join(sorted(flat))}) "
                "cannot be mixed: move them into an operation"
            )
        ops = tuple(operations) if operations is not None else flat_operations(**flat)
        for name, value in (
            ("target", target),
            ("records", records),
            ("table", table),
            ("base_path", base_path),
            ("reset_sql", reset_sql),
            ("count_sql", count_sql),
            ("processed_sql", processed_sql),
        ):
            if not isinstance(value, str):
                raise WorkloadError(f"{name} must be a string, got {value!r}")
        if base_path and (not base_path.startswith("/") or base_path.endswith("/")):
            raise WorkloadError(f'base_path={base_path!r} must start with / and not end with one, e.g. "/v1"')
        headers = dict(headers or {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
            raise WorkloadError(f"headers must be a table of strings, got {headers!r}")
        for key, given in (
            ("target", target),
            ("records", records),
            ("table", table or records),
            ("base_path", base_path),
            ("headers", headers),
            ("auth", auth),
            ("operations", ops),
            ("reset_sql", reset_sql),
            ("count_sql", count_sql),
            ("processed_sql", processed_sql),
        ):
            object.__setattr__(self, key, given)
        if processed_sql and "%(keys)s" not in processed_sql:
            raise WorkloadError("processed_sql must select the processed keys among the key list %(keys)s")
        check_operations(ops)

    # -- the primary write: what the record steps create, verify and find --------------------
    @property
    def write(self) -> Operation:
        """The first write operation: the one "Given N users exist" creates."""
        return next(op for op in self.operations if op.is_write)

    def writes(self) -> list[Operation]:
        return [op for op in self.operations if op.is_write]

    def operation(self, name: str) -> Operation:
        return next(op for op in self.operations if op.name == name)

    def record(self, run: str, seq: int) -> tuple[str, str, Any, str]:
        """(key, path, body, expected) of record ``seq`` of the primary write (path without base_path)."""
        return self.write.record(run, seq)

    def expected(self, body: dict) -> str:
        return self.write.expected(body)

    def matches(self, answer: Any, expected: str) -> bool:
        return self.write.matches(answer, expected)

    def read_path_for(self, ident: Any) -> str:
        return self.write.read.path.replace("{id}", str(ident))  # type: ignore[union-attr]

    create_method = property(lambda self: self.write.method)
    create_path = property(lambda self: self.write.path)
    create_body = property(lambda self: self.write.body)
    read_method = property(lambda self: self.write.read.method)
    read_path = property(lambda self: self.write.read.path)
    id_field = property(lambda self: self.write.read.id_field)
    compare = property(lambda self: self.write.read.compare)
    find_sql = property(lambda self: self.write.find_sql)

    def weights(self, write_fraction: float) -> list[float]:
        """Each operation's weight; the flat form's come from ``write_fraction`` (0..1)."""
        return [
            op.weight if op.weight is not None else (write_fraction if op.is_write else 1.0 - write_fraction)
            for op in self.operations
        ]

    def header_values(self, run: str) -> dict[str, str]:
        """The static headers with ``{run}`` and ``{env.NAME}`` (the variable NAME, empty if unset) filled in.

        The stack file fills its own placeholders at load; these are the ones only known where the requests go.
        """
        values = {"run": run}
        for value in self.headers.values():
            values.update((name, os.environ.get(name[4:], "")) for name in _ENV_PLACEHOLDER.findall(value))
        return render(self.headers, values)

    # -- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "target": self.target,
            "records": self.records,
            "table": self.table,
            "base_path": self.base_path,
            "headers": dict(self.headers),
            "auth": self.auth.to_dict() if self.auth else None,
            "operations": [op.to_dict() for op in self.operations],
            "reset_sql": self.reset_sql,
            "count_sql": self.count_sql,
            "processed_sql": self.processed_sql,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Workload:
        """From :meth:`to_dict`'s output or a stack file's ``[workload]`` table."""
        return parse_workload(data, "[workload]", prefix=False)


def parse_workload(table: dict, where: str, prefix: bool = True) -> Workload:
    """A stack file's ``[workload]`` table (or :meth:`Workload.to_dict`'s output) as a :class:`Workload`.

    Every problem is a :class:`WorkloadError` in one line; ``where`` (e.g. the stack
    file's path, with or without `` [workload]``) comes first in it.
    """
    head = "" if not prefix else f"{where}: " if "[workload]" in where else f"{where}: [workload] "
    try:
        if not isinstance(table, dict):
            raise WorkloadError(f"must be a table, got {table!r}")
        data = dict(table)
        unknown = sorted(set(data) - _KEYS - FLAT_KEYS)
        if unknown:
            raise WorkloadError(
                f"unknown workload field(s) {', '.join(unknown)}; valid: {', '.join(sorted(_KEYS | FLAT_KEYS))}"
            )
        if data.get("auth") is not None:
            try:
                data["auth"] = parse_auth(data["auth"], "[workload.auth]")
            except ValueError as error:
                raise WorkloadError(str(error)) from None
        if "operations" in data:
            ops = data["operations"]
            if not isinstance(ops, list):
                raise WorkloadError("operations must be an array of tables: [[workload.operations]]")
            data["operations"] = [parse_operation(op, i) for i, op in enumerate(ops)]
        if "compare" in data and not isinstance(data["compare"], list | tuple):
            raise WorkloadError(f"compare must be a list of field names, got {data['compare']!r}")
        return Workload(**data)
    except WorkloadError as error:
        raise WorkloadError(f"{head}{error}") from None
    except TypeError as error:  # a value of the wrong type deep inside
        raise WorkloadError(f"{head}{error}") from None
