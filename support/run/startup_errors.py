"""The errors a run can meet before any scenario starts, shown as one line each."""

from __future__ import annotations

import difflib
import os
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from support import REPO_ROOT
from support.backends.compose.project import compose_file_of, load_compose_project
from support.backends.process.pg_binaries import PgNotFound
from support.core.config import Settings, SettingsError, load_settings, read_ini_userdata
from support.core.run_dirs import check_work_root
from support.run.gherkin_types import NAMED_PARAMETERS
from support.stack.definitions import ServiceDefinition, StackDefinition
from support.stack.service_tables import StackFileError
from support.stack.services import ServiceError
from support.stack.stack import LOAD, UnknownService
from support.stack.stack_file import stack_definition

__all__ = [
    "STARTUP_ERRORS",
    "FeatureFileError",
    "check_run",
    "check_features",
    "check_steps",
    "check_service_command",
    "selected_scenarios",
    "one_line",
]


def one_line(error: BaseException) -> str:
    """The error's message on one line (logs attached to it go to the evidence, not the terminal)."""
    text = " ".join(str(error).split())
    return text or type(error).__name__


# -- the feature files: mistakes behave itself lets through as "0 scenarios" or a scenario with no steps --

_BLOCK_KEYWORDS = (
    "Feature",
    "Background",
    "Scenario",
    "Scenario Outline",
    "Scenario Template",
    "Example",
    "Examples",
    "Scenarios",
    "Rule",
)
_STEP_KEYWORDS = ("Given", "When", "Then", "And", "But")
_KEYWORD_LINE = re.compile(r"^\s*([A-Za-z]+(?: [A-Za-z]+)?)\s*:")
_DOC_STRING = ('"""', "```")


class FeatureFileError(ValueError):
    """A feature file would run fewer scenarios or steps than it says; the message names the line to fix."""


STARTUP_ERRORS = (SettingsError, StackFileError, PgNotFound, ServiceError, UnknownService, FeatureFileError, OSError)


def _misspelt_keyword(line: str) -> str | None:
    """The block keyword a description line was probably meant to start with (``Scenari: x`` -> ``Scenario:``)."""
    match = _KEYWORD_LINE.match(line)
    close = difflib.get_close_matches(match.group(1), _BLOCK_KEYWORDS, n=1, cutoff=0.7) if match else []
    return f"{close[0]}:" if close else None


def _misspelt_step(description: Sequence[str]) -> str:
    """A hint for a scenario without steps whose description starts like a step (``Gven ok``)."""
    for text in description or []:
        words = text.split()
        close = difflib.get_close_matches(words[0], _STEP_KEYWORDS, n=1, cutoff=0.75) if words else []
        if close and words[0] != close[0]:
            return f" ({text.strip()!r} is read as description: did you mean {close[0]!r}?)"
    return ""


def _line_of(lines: list[str], text: str, after: int = 0) -> int:
    for number, line in enumerate(lines[after:], start=after + 1):
        if line.strip() == text.strip():
            return number
    return after + 1


def _unclosed_doc_string(lines: list[str]) -> tuple[int, str] | None:
    opened: tuple[int, str] | None = None
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if opened is None:
            if text.startswith(_DOC_STRING) and not text.startswith("#"):
                opened = (number, text[:3])
        elif text == opened[1]:
            opened = None
    return opened


def check_run(features: Sequence[Any], config: Any, find_match: Callable[[Any], Any]) -> Settings:
    """The checks a run makes before anything starts, in one place for ``before_all`` and the parallel
    runner (``scripts/parallel.py``): the settings (behave's userdata over ``behave.ini``, the
    environment), the feature files and the selection, every selected step against ``find_match``
    (behave's step registry lookup) and the stack file, the work root, and the stack file's commands.
    Returns the settings; raises one of :data:`STARTUP_ERRORS`."""
    settings = load_settings(config.userdata, read_ini_userdata(Path("behave.ini")))
    check_features(features, selected_scenarios(features, config))
    check_steps(features, config, find_match, settings)
    check_work_root(settings.work_root_path)
    check_service_command(settings)
    return settings


def check_features(features: Sequence[Any], selected: int) -> None:
    """Refuse a run whose feature files hide scenarios or steps, or that selects no scenario at all.

    ``features`` are behave's parsed features (duck-typed: ``filename``, ``line``, ``name``,
    ``description``, ``walk_scenarios()``; scenarios with ``steps`` and ``description``); ``selected``
    is how many scenarios the tag, name and line filters keep. Raises :class:`FeatureFileError`.
    """
    for feature in features:
        path = Path(feature.filename)
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        unclosed = _unclosed_doc_string(lines)
        if unclosed:
            raise FeatureFileError(
                f"{path}:{unclosed[0]}: the doc string opened here with {unclosed[1]} is never "
                f"closed, so the rest of the file is read as its text; close it with a line "
                f"holding {unclosed[1]} alone"
            )
        parts = [(feature.line, feature.description)] + [(s.line, s.description) for s in feature.walk_scenarios()]
        for start, description in parts:
            for text in description or []:
                meant = _misspelt_keyword(text)
                if meant and not text.strip().startswith(meant):
                    number = _line_of(lines, text, start)
                    raise FeatureFileError(
                        f"{path}:{number}: {text.strip()!r} is not a Gherkin keyword line, so it "
                        f"is read as description text; did you mean {meant!r}?"
                    )
        scenarios = feature.walk_scenarios()
        if not scenarios:
            raise FeatureFileError(
                f"{path}:{feature.line}: feature {feature.name!r} has no scenario; start one with 'Scenario:'"
            )
        for scenario in scenarios:
            if not scenario.steps:
                raise FeatureFileError(
                    f"{path}:{scenario.line}: scenario {scenario.name!r} has no steps"
                    f"{_misspelt_step(scenario.description)}; steps start with Given, When, "
                    "Then, And or But"
                )
    if features and selected == 0:
        total = sum(len(f.walk_scenarios()) for f in features)
        raise FeatureFileError(
            f"no scenario to run: the tags, names or lines given select none of the {total} "
            f"scenario(s) in {len(features)} feature file(s); check --tags (the suite's are "
            "@chaos) and the paths"
        )


def selected_scenarios(features: Sequence[Any], config: Any) -> int:
    """How many scenarios of behave's parsed ``features`` its ``config`` (tags, names, lines) lets run."""
    return sum(
        1
        for feature in features
        if feature.should_run(config)
        for scenario in feature.walk_scenarios()
        if scenario.should_run(config)
    )


def check_steps(
    features: Sequence[Any], config: Any, find_match: Callable[[Any], Any], settings: Settings | None = None
) -> None:
    """Refuse a selected step that matches no step definition, or whose parameter is malformed
    (``-1 seconds``), before anything starts. ``find_match`` is behave's step registry lookup: it
    returns None for no match, and a match carrying ``stored_error`` when a parameter is refused.
    With ``settings``, a step naming a service, link, records' noun or table the stack file does not
    have is refused too, with the names it has."""
    definition = None
    if settings is not None:  # a compose project answers the same names (services, links, records, workload)
        found = compose_file_of(settings)
        definition = load_compose_project(*found) if found else stack_definition(settings)
    for feature in features:
        if not feature.should_run(config):
            continue
        for scenario in feature.walk_scenarios():
            if not scenario.should_run(config):
                continue
            for step in scenario.all_steps:
                match = find_match(step)
                where = f"{feature.filename}:{step.line}: {step.keyword} {step.name}"
                if match is None:
                    raise FeatureFileError(
                        f"{where}: no step definition matches it; the steps are listed in README.md (Steps)"
                    )
                error = getattr(match, "stored_error", None)
                if error is not None:
                    raise FeatureFileError(f"{where}: {one_line(error)}")
                if definition is not None:
                    _check_names(where, {a.name: a.value for a in match.arguments if a.name}, definition)


def _check_names(where: str, arguments: dict[str, Any], definition: Any) -> None:
    """Refuse a step argument that names no service, link, records' noun or table of ``definition``
    (a :class:`StackDefinition`, or what else answers its ``path``, ``services``, ``links``, ``records``
    and ``workload``: the compose backend's project)."""
    services = definition.services
    for name, value in arguments.items():
        kind = NAMED_PARAMETERS.get(name)
        if kind == "link" and value == LOAD and LOAD not in services:
            continue  # the suite's HTTP link from the load to the workload's target
        if kind in ("service", "link") and value not in services:
            raise FeatureFileError(f"{where}: {UnknownService.among(value, services)} ({definition.path})")
        if kind == "records" and value not in (definition.records, "users"):
            raise FeatureFileError(
                f"{where}: {value!r} is not what this stack's workload stores; say "
                f"{definition.records!r} ([workload] records in {definition.path})"
            )
        table = getattr(definition.workload, "table", "")
        if kind == "table" and value not in (table, "users"):
            raise FeatureFileError(
                f"{where}: {value!r} is not the workload's table; say {table!r} ([workload] table in {definition.path})"
            )
    if "a" in arguments and "b" in arguments:
        pair = (arguments["a"], arguments["b"])
        load_link = LOAD not in services and LOAD in pair
        if load_link and set(pair) != {LOAD, definition.workload.target}:
            raise FeatureFileError(
                f"{where}: the load's link goes to the workload's target, {definition.workload.target}, not to "
                f"{pair[1] if pair[0] == LOAD else pair[0]}"
            )
        if not load_link and pair not in definition.links and pair[::-1] not in definition.links:
            links = ", ".join(f"{one} and {other}" for one, other in definition.links) or "none"
            raise FeatureFileError(
                f"{where}: there is no network link between {pair[0]} and {pair[1]} (a link is "
                f"a uses edge of the stack file); links: {links}"
            )


def check_service_command(settings: Settings) -> None:
    """Refuse a stack file whose command services name a program this machine does not have, or whose
    ``cwd`` does not exist, before anything starts (process backend: it runs the commands here)."""
    if settings.backend != "process" or compose_file_of(settings) is not None:
        return  # a compose project's commands run in its images
    definition = stack_definition(settings)
    for service in definition.services.values():
        if service.kind == "command":
            _check_program(definition, service)


def _check_program(definition: StackDefinition, service: ServiceDefinition) -> None:
    where = f"{definition.path}: [services.{service.name}]"
    if not service.cwd.is_dir():
        raise StackFileError(
            f"{where} cwd {str(service.cwd)!r} is not a directory; fix cwd in the stack file "
            "(relative paths start at the stack file's folder)"
        )
    known = {"{python}": sys.executable, "{repo}": str(REPO_ROOT), "{stack_dir}": str(definition.path.parent)}
    program = service.command[0]
    for placeholder, value in known.items():
        program = program.replace(placeholder, value)
    if "{" in program or "PATH" in service.env:
        return  # filled in only at start, or searched on a PATH of the service's own
    found = (
        (service.cwd / program).is_file() and os.access(service.cwd / program, os.X_OK)
        if "/" in program
        else shutil.which(program) is not None
    )
    if not found:
        raise StackFileError(
            f"{where} command: the program {program!r} is not found (neither on PATH nor as "
            f"a file relative to {service.cwd}); install it, or fix the command in the stack file "
            "that the stack_file setting names"
        )
