"""Write docs/steps.md, the catalog of every Gherkin step, from behave's step registry.

    .venv/bin/python -m scripts.steps_catalog            # rewrites docs/steps.md
    .venv/bin/python -m scripts.steps_catalog --check    # exit 1 if docs/steps.md is not current

For each step the registry holds (the suite's ``steps/*.py``, loaded as behave loads them, after
``environment.py`` has registered the parameter types): its phrasing, its parameters with their
type and what the type takes (the converter's docstring in ``support/run/gherkin_types.py``, units
included), what it does (the step function's docstring; else the README's step table row of that
phrasing; else the first docstring line of the fault the step injects) and the backends that can
run it (a step module's ``BACKENDS`` string when it has one; else by the family of the fault the step
injects, :data:`FAULT_BACKENDS`; a step that injects none runs on every backend). The output depends only on the code and the README, so it is the same on every
machine: ``tests/test_steps_catalog.py`` fails when it is not current.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import re
import sys
import textwrap
import typing
from pathlib import Path

from behave.configuration import Configuration
from behave.runner import Runner
from behave.step_registry import registry

from support import REPO_ROOT
from support.faults.factory import FaultFactory
from support.run.gherkin_types import TYPES

__all__ = ["FAULT_BACKENDS", "catalog", "phrasing", "registered_steps", "main"]

CATALOG = REPO_ROOT / "docs" / "steps.md"
COMMAND = ".venv/bin/python -m scripts.steps_catalog"
ALL_BACKENDS = "all"
#: which backends can inject the faults of a module of ``support/faults/`` (keep with the module's docstring)
FAULT_BACKENDS = {
    "process": "process, docker, compose (attached: refused, the suite never touches what it did not start)",
    "graceful": "process, docker, compose (attached: refused)",
    "database": ALL_BACKENDS,
    "slots": ALL_BACKENDS,
    "concurrency": ALL_BACKENDS,
    "network": "process, docker, compose (the links of the suite's fault proxy)",
    "http": "process, docker, compose (the links of the suite's fault proxy)",
    "limits": "process (cgroup v1, as root), docker, compose",
    "cpu_hog": "process, docker, compose (a hog on the same machine)",
    "descriptors": "process, docker (as root)",
    "disk": "process, docker (as root, with -D pg_disk_mb)",
    "clock": "process (libfaketime preloaded)",
}
_KEYWORDS = {"given": "Given", "when": "When", "then": "Then", "step": "Given/When/Then"}
_PARAMETER = re.compile(r"\{(\w*)(?::(\w+))?\}")


def registered_steps() -> list:
    """Every step definition behave's registry holds for this repository, in file and line order."""
    config = Configuration(command_args=["--dry-run", "--no-summary", "--format", "null"])
    runner = Runner(config)
    with runner.path_manager:
        runner.setup_paths()
        runner.load_hooks()  # environment.py registers the parameter types
        runner.load_step_definitions()
    matchers = [m for kind in ("given", "when", "then", "step") for m in registry.steps.get(kind, [])]
    return sorted(matchers, key=lambda m: (Path(m.location.filename).name, m.location.line))


def phrasing(matcher) -> str:
    """The step as behave's ``--steps-catalog`` prints it: ``When {service:Service} restarts``."""
    return f"{_KEYWORDS[matcher.step_type]} {matcher.pattern}"


def _plain(text: str) -> str:
    """A phrasing without the types: ``When {service} restarts``."""
    return _PARAMETER.sub(lambda m: "{" + m.group(1) + "}", text)


def _first_paragraph(doc: str | None) -> str:
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split()) if doc else ""


def _markdown(text: str) -> str:
    return text.replace("``", "`")


def _parameters(pattern: str) -> str:
    """Each parameter with its type and what the type takes (the converter's docstring, up to its examples)."""
    found = []
    for name, kind in _PARAMETER.findall(pattern):
        converter = TYPES.get(kind)
        what = _first_paragraph(converter.__doc__).split(": ``")[0].rstrip(".") if converter else ""
        found.append(f"`{name}`: {kind} ({_markdown(what)})" if what else f"`{name}`: {kind or 'text'}")
    return "; ".join(found) or "-"


def readme_descriptions(readme: Path = REPO_ROOT / "README.md") -> dict[str, str]:
    """The README's step table: each phrasing written in a row's first cell (``{n}`` for any parameter) and
    that row's description."""
    rows: dict[str, str] = {}
    for line in readme.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) != 2 or not cells[0].startswith("`"):
            continue
        for written in re.findall(r"`([^`]+)`", cells[0]):
            rows.setdefault(_key(written), cells[1])
    return rows


def _key(text: str) -> str:
    """A phrasing with its parameters as ``{}``, a duration's unit after one dropped (the README writes
    ``{seconds} seconds`` where the step takes ``{seconds:Duration}``)."""
    text = re.sub(r"\{[^}]*\}", "{}", " ".join(text.split()))
    return re.sub(r"\{\} ?(?:seconds?|ms|s|minutes?)\b", "{}", text)


def _injected_fault(func) -> type | None:
    """The fault class a step injects: the :class:`FaultFactory` method its body calls, by its return type."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if isinstance(owner, ast.Attribute) and owner.attr == "faults":
                method = getattr(FaultFactory, node.func.attr, None)
                hints = typing.get_type_hints(method) if method else {}
                if isinstance(hints.get("return"), type):
                    return hints["return"]
    return None


def _description(matcher, readme: dict[str, str], fault: type | None) -> str:
    text = _first_paragraph(matcher.func.__doc__)
    keywords = ("Given", "When", "Then") if matcher.step_type == "step" else (_KEYWORDS[matcher.step_type],)
    for keyword in keywords:
        text = text or readme.get(_key(f"{keyword} {_plain(matcher.pattern)}"), "")
    if not text and fault is not None:
        text = _first_paragraph(fault.__doc__)
    return _markdown(text) or "-"


def _backends(matcher, fault: type | None) -> str:
    declared = getattr(sys.modules.get(matcher.func.__module__), "BACKENDS", None)
    if isinstance(declared, str):  # a step module may say it: BACKENDS = "process (stack/ha/stack.toml)"
        return declared
    if fault is None:
        return ALL_BACKENDS
    family = fault.__module__.rsplit(".", 1)[1]
    return FAULT_BACKENDS.get(family, f"see `support/faults/{family}.py`")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def catalog(matchers: list | None = None, readme: dict[str, str] | None = None) -> str:
    """docs/steps.md's text: a table per step module, in file and line order."""
    matchers = registered_steps() if matchers is None else matchers
    readme = readme_descriptions() if readme is None else readme
    out = [
        "# Steps",
        "",
        f"Generated from behave's step registry by `{COMMAND}`; do not edit by hand (the test",
        "`tests/test_steps_catalog.py` fails when this file is not current). `behave --steps-catalog` lists",
        "the same steps with their parameter types. A parameter's type says what it takes; durations are",
        "converted to seconds. *Backends*: where the step's fault can be injected (`all`: process, docker,",
        "compose and attached).",
    ]
    by_module: dict[str, list] = {}
    for matcher in matchers:
        by_module.setdefault(Path(matcher.location.filename).name, []).append(matcher)
    for module, steps in by_module.items():
        source = sys.modules.get(steps[0].func.__module__)
        out += ["", f"## `steps/{module}`", ""]
        summary = _first_paragraph(getattr(source, "__doc__", None))
        if summary:
            out += [summary, ""]
        out += ["| step | parameters | what it does | backends |", "| --- | --- | --- | --- |"]
        for matcher in steps:
            fault = _injected_fault(matcher.func)
            out.append(
                f"| `{_cell(_plain(phrasing(matcher)))}` | {_cell(_parameters(matcher.pattern))} "
                f"| {_cell(_description(matcher, readme, fault))} | {_cell(_backends(matcher, fault))} |"
            )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/steps.md is not current")
    args = parser.parse_args(argv)
    text = catalog()
    if args.check:
        current = CATALOG.read_text() if CATALOG.exists() else ""
        if current != text:
            print(f"chaos-suite: docs/steps.md is not current; run {COMMAND}", file=sys.stderr)
            return 1
        return 0
    CATALOG.parent.mkdir(exist_ok=True)
    CATALOG.write_text(text)
    print(f"wrote {CATALOG.relative_to(REPO_ROOT)}: {text.count(chr(10) + '| `')} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
