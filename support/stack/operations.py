"""The workload's operations: what one kind of request sends, how its record is read back, and their checks.

An :class:`Operation` is a write (it has ``find_sql``), a read-back (``reads``) or a
plain request (see :mod:`support.stack.workload`, which gathers them into a
:class:`~support.stack.workload.Workload`); :class:`ReadBack` says how a written
record is read back. Here too: :func:`render` (the templates' placeholders),
:class:`WorkloadError`, the flat keys' one write plus one read-back
(:func:`flat_operations`), the parsing of one ``[[workload.operations]]`` table
(:func:`parse_operation`) and the checks over the operations of a workload
(:func:`check_operations`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlencode

__all__ = [
    "WorkloadError",
    "render",
    "ReadBack",
    "Operation",
    "flat_operations",
    "FLAT_KEYS",
    "parse_operation",
    "check_operations",
]


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


def flat_operations(
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


FLAT_KEYS = frozenset(flat_operations.__code__.co_varnames[: flat_operations.__code__.co_argcount])
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


def check_operations(ops: tuple[Operation, ...]) -> None:
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


def parse_operation(data: Any, i: int) -> Operation:
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
