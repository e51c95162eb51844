"""The workload the suite drives through a service: how a record is created, read back and found by SQL.

The reference API's workload is the default; a stack file (:mod:`support.stack.stack_file`)
can describe any other service's. Templates are plain strings in which
``{key}`` (unique per record), ``{name}`` (a readable label), ``{run}`` and
``{seq}`` are replaced; ``{id}`` in the read path is the value of ``id_field``
in the create answer. Everything here is JSON-able so it can travel to the
load worker's process.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Workload", "render", "WorkloadError"]


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
class Workload:
    """How to create, read back and find one record of the service under test."""

    create_method: str = "POST"
    create_path: str = "/users"
    create_body: dict = field(default_factory=lambda: {"name": "{name}", "email": "{key}"})
    #: the field of the create answer that identifies the record for the read path
    id_field: str = "id"
    read_method: str = "GET"
    read_path: str = "/users/{id}"
    #: fields of the create body that the read answer and the stored row must hold unchanged
    compare: tuple[str, ...] = ("name", "email")
    key_template: str = "{run}-{seq}@load.test"
    name_template: str = "user-{run}-{seq}"
    #: SQL returning, for the keys in %(keys)s, the key then the ``compare`` columns in order
    find_sql: str = "SELECT email, name, email FROM users WHERE email = ANY(%(keys)s)"
    #: SQL that empties what the workload writes, run before each scenario
    reset_sql: str = "TRUNCATE users RESTART IDENTITY"
    #: SQL counting the records, for "exactly N are stored"
    count_sql: str = "SELECT count(*) FROM users"
    #: the table the records live in: what "the users table is locked" and slow statements act on
    table: str = "users"

    def __post_init__(self) -> None:
        object.__setattr__(self, "compare", tuple(self.compare))
        if "{id}" not in self.read_path:
            raise WorkloadError(f"read_path={self.read_path!r} must contain {{id}}")
        if "{key}" not in repr(self.create_body):
            raise WorkloadError("create_body must contain {key} somewhere, so every record is unique and findable")
        for name in self.compare:
            if name not in self.create_body:
                raise WorkloadError(f"compare names {name!r}, which create_body does not have; "
                                    f"its fields: {', '.join(self.create_body)}")
        if "%(keys)s" not in self.find_sql:
            raise WorkloadError("find_sql must select rows by the key list %(keys)s")
        if self.create_method.upper() not in ("POST", "PUT", "PATCH"):
            raise WorkloadError(f"create_method={self.create_method!r}: use POST, PUT or PATCH")

    def record(self, run: str, seq: int) -> tuple[str, str, Any, str]:
        """(key, path, body, expected) of record ``seq``; ``expected`` is the compared values, tab-joined."""
        values = {"run": run, "seq": str(seq)}
        values["key"] = render(self.key_template, values)
        values["name"] = render(self.name_template, values)
        body = render(self.create_body, values)
        return values["key"], render(self.create_path, values), body, self.expected(body)

    def expected(self, body: dict) -> str:
        """The compared fields of a create body, tab-joined (what :class:`Request.body` stores)."""
        return "\t".join(str(body[name]) for name in self.compare)

    def matches(self, answer: Any, expected: str) -> bool:
        """True when a read answer holds the compared values unchanged."""
        return isinstance(answer, dict) and "\t".join(str(answer.get(n)) for n in self.compare) == expected

    def read_path_for(self, ident: Any) -> str:
        return self.read_path.replace("{id}", str(ident))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["compare"] = list(self.compare)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Workload":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise WorkloadError(f"unknown workload field(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        return cls(**data)
