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
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlencode

from support.stack.auth import Auth, parse_auth

__all__ = ["Workload", "Operation", "ReadBack", "render", "WorkloadError", "parse_workload"]


class WorkloadError(ValueError):
    """A workload description is malformed; the message names the field and how to fix it."""


def render(template: Any, values: dict[str, str]) -> Any:
    """``template`` (a string, or dicts/lists of strings) with every ``{name}`` of ``values`` replaced.

    Plain replacement, not ``str.format``: JSON braces in bodies stay as they are.
    """
    if isinstance(template, str):
        for name, value in values.items():
            template = template.replace("{" + name + "}", value)
        return template
    if isinstance(template, dict):
        return {k: render(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, values) for v in template]
    return template


@dataclass(frozen=True)
class ReadBack:
    """How a written record is read back: ``path`` with ``{id}``, and the fields that must come back unchanged."""

    path: str
    id_field: str = "id"
    compare: tuple[str, ...] = ()
    method: str = "GET"


@dataclass(frozen=True)
class Operation:
    """One kind of request of the workload; see the module docstring for write, read-back and plain."""

    name: str
    method: str = "GET"
    path: str = "/"
    #: relative weight in the mix; None: from the write fraction setting (the flat form)
    weight: float | None = 1.0
    json: Any = None
    form: dict | None = None
    key_template: str = ""
    name_template: str = ""
    read: ReadBack | None = None
    #: SQL returning, for the keys in %(keys)s, the key then the ``read.compare`` columns in order
    find_sql: str = ""
    #: the write whose acknowledged records this operation reads back
    reads: str = ""

    @property
    def is_write(self) -> bool:
        return bool(self.find_sql)

    @property
    def body(self) -> Any:
        return self.form if self.form is not None else self.json

    def record(self, run: str, seq: int) -> tuple[str, str, Any, str]:
        """(key, path, body, expected) of record ``seq``; ``expected`` is the compared values, tab-joined."""
        values = {"run": run, "seq": str(seq)}
        values["key"] = render(self.key_template, values)
        values["name"] = render(self.name_template, values)
        body = render(self.body, values)
        return values["key"], render(self.path, values), body, self.expected(body)

    def expected(self, body: dict) -> str:
        """The compared fields of a body, tab-joined (what :class:`Request.body` stores)."""
        return "\t".join(str(body[name]) for name in self.read.compare) if self.read else ""

    def matches(self, answer: Any, expected: str) -> bool:
        """True when a read answer holds the compared values unchanged."""
        compare = self.read.compare if self.read else ()
        return isinstance(answer, dict) and "\t".join(str(answer.get(n)) for n in compare) == expected

    def encode(self, body: Any) -> tuple[bytes | None, str]:
        """(bytes, content type) of a rendered body: form-encoded for ``form``, else JSON."""
        if body is None:
            return None, "application/json"
        if self.form is not None:
            return urlencode(body).encode(), "application/x-www-form-urlencoded"
        return json.dumps(body, separators=(",", ":")).encode(), "application/json"

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.read is not None:
            data["read"] = {
                "path": self.read.path,
                "id_field": self.read.id_field,
                "compare": list(self.read.compare),
                "method": self.read.method,
            }
        return data


def _flat_operations(
    create_method: str = "POST",
    create_path: str = "/users",
    create_body: dict | None = None,
    id_field: str = "id",
    read_method: str = "GET",
    read_path: str = "/users/{id}",
    compare: Any = ("name", "email"),
    key_template: str = "{run}-{seq}@load.test",
    name_template: str = "user-{run}-{seq}",
    find_sql: str = "SELECT email, name, email FROM users WHERE email = ANY(%(keys)s)",
) -> tuple[Operation, ...]:
    """Today's flat keys as one write and one read-back, weighted by the write fraction."""
    body = {"name": "{name}", "email": "{key}"} if create_body is None else create_body
    write = Operation(
        "create",
        create_method,
        create_path,
        None,
        json=body,
        key_template=key_template,
        name_template=name_template,
        find_sql=find_sql,
        read=ReadBack(read_path, id_field, tuple(compare), read_method),
    )
    return write, Operation("read", read_method, read_path, None, reads="create")


FLAT_KEYS = frozenset(_flat_operations.__code__.co_varnames[: _flat_operations.__code__.co_argcount])
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
_OP_KEYS = {
    "name",
    "weight",
    "method",
    "path",
    "json",
    "form",
    "key_template",
    "name_template",
    "read",
    "find_sql",
    "reads",
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
        ops = tuple(operations) if operations is not None else _flat_operations(**flat)
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
        _check_operations(ops)

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


def _check_operations(ops: tuple[Operation, ...]) -> None:
    if not ops:
        raise WorkloadError("needs at least one [[workload.operations]]")
    names = [op.name for op in ops]
    for i, op in enumerate(ops):
        where = f"operations[{i}] ({op.name})"
        if names.count(op.name) > 1:
            raise WorkloadError(f"{where}: the name {op.name!r} is used twice")
        if op.weight is not None and (
            isinstance(op.weight, bool) or not isinstance(op.weight, (int, float)) or op.weight < 0
        ):
            raise WorkloadError(f"{where}: weight={op.weight!r} must be a number >= 0")
        if not op.path.startswith("/"):
            raise WorkloadError(f"{where}: path={op.path!r} must start with /")
        if op.json is not None and op.form is not None:
            raise WorkloadError(f"{where}: takes json or form, not both")
        if op.form is not None and not all(isinstance(v, str) for v in op.form.values()):
            raise WorkloadError(f"{where}: form must be a table of strings")
        if op.reads:
            target = next((o for o in ops if o.name == op.reads), None)
            if target is None or not target.is_write:
                raise WorkloadError(
                    f"{where}: reads={op.reads!r} names no write operation; writes: "
                    f"{', '.join(o.name for o in ops if o.is_write) or 'none'}"
                )
        if op.is_write:
            _check_write(op, where)
    if all(op.weight == 0 for op in ops):
        raise WorkloadError("every operation has weight 0: give at least one a weight > 0")
    if not any(op.is_write for op in ops):
        raise WorkloadError(
            "no operation is a write (one with find_sql, read and a body using {key}): the record "
            "steps and the durability check need one"
        )


def _check_write(op: Operation, where: str) -> None:
    flat = op.name == "create" and op.weight is None
    if op.read is None:
        raise WorkloadError(
            f'{where}: a write needs read = {{ path = "/things/{{id}}", id_field = "id", compare = [...] }}}}'
        )
    if "{id}" not in op.read.path:
        raise WorkloadError(f"{'read_path' if flat else where + ': read.path'}={op.read.path!r} must contain {{id}}")
    if not isinstance(op.body, dict) or "{key}" not in repr(op.body):
        raise WorkloadError(
            f"{'create_body' if flat else where + ': the json or form body'} must contain {{key}} "
            "somewhere, so every record is unique and findable"
        )
    for name in op.read.compare:
        if name not in op.body:
            raise WorkloadError(
                f"{'' if flat else where + ': read.'}compare names {name!r}, which "
                f"{'create_body' if flat else 'the body'} does not have; its fields: "
                f"{', '.join(op.body)}"
            )
    if "%(keys)s" not in op.find_sql:
        raise WorkloadError(f"{'' if flat else where + ': '}find_sql must select rows by the key list %(keys)s")
    if op.method.upper() not in ("POST", "PUT", "PATCH"):
        raise WorkloadError(f"{'create_method' if flat else where + ': method'}={op.method!r}: use POST, PUT or PATCH")
    if not op.key_template or "{seq}" not in op.key_template or "{run}" not in op.key_template:
        raise WorkloadError(
            f"{'key_template' if flat else where + ': key_template'}={op.key_template!r} must use "
            "{run} and {seq}, so every key is unique"
        )


def _operation(data: Any, i: int) -> Operation:
    if not isinstance(data, dict):
        raise WorkloadError(f"operations[{i}] must be a table, got {data!r}")
    where = f"operations[{i}] ({data.get('name', '?')})"
    unknown = sorted(set(data) - _OP_KEYS)
    if unknown:
        raise WorkloadError(f"{where}: unknown field(s) {', '.join(unknown)}; valid: {', '.join(sorted(_OP_KEYS))}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise WorkloadError(f'operations[{i}] needs a name, e.g. name = "create"')
    options = dict(data)
    for key in ("method", "path", "key_template", "name_template", "find_sql", "reads"):
        if key in options and not isinstance(options[key], str):
            raise WorkloadError(f"{where}: {key} must be a string, got {options[key]!r}")
    if "method" in options:
        options["method"] = options["method"].upper()
    read = options.get("read")
    if read is not None:
        if not isinstance(read, dict) or "path" not in read or set(read) - {"path", "id_field", "compare", "method"}:
            raise WorkloadError(f"{where}: read takes path (with {{id}}), id_field, compare and method, got {read!r}")
        compare = read.get("compare", [])
        if not isinstance(compare, list) or not all(isinstance(c, str) for c in compare):
            raise WorkloadError(f"{where}: read.compare must be a list of field names")
        options["read"] = ReadBack(
            str(read["path"]), str(read.get("id_field", "id")), tuple(compare), str(read.get("method", "GET")).upper()
        )
    if options.get("find_sql") and "key_template" not in options:
        options["key_template"] = f"{name}-{{run}}-{{seq}}"
    if options.get("find_sql") and "name_template" not in options:
        options["name_template"] = f"{name}-{{run}}-{{seq}}"
    return Operation(**options)


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
            data["operations"] = [_operation(op, i) for i, op in enumerate(ops)]
        if "compare" in data and not isinstance(data["compare"], list | tuple):
            raise WorkloadError(f"compare must be a list of field names, got {data['compare']!r}")
        return Workload(**data)
    except WorkloadError as error:
        raise WorkloadError(f"{head}{error}") from None
    except TypeError as error:  # a value of the wrong type deep inside
        raise WorkloadError(f"{head}{error}") from None
