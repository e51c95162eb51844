"""What the Allure report needs besides the results: environment, categories, executor, labels.

Allure reads three files from the results folder: ``environment.properties``
(what ran), ``categories.json`` (rules that sort failures into named
categories) and ``executor.json`` (who ran it). The categories here are the
product's own, matched on the messages our checks raise (the modules of ``support.checks``,
worded in ``support.checks.messages``, and ``support.run.scenario``). Allure matches a
rule when the result's status is among ``matchedStatuses`` and each given
regular expression matches the *whole* status message / trace (Java regex,
DOTALL); a result goes into every category it matches, so the rules below are
written to be mutually exclusive. :func:`categorize` applies them the same way.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from support.checks.messages import NO_FAULT

__all__ = [
    "CATEGORIES",
    "RECOVERY_TOO_SLOW",
    "WRITE_LOST",
    "SERVICE_HUNG",
    "WRONG_STATUS",
    "STACK_FAILED",
    "SUITE_ERROR",
    "SEVERITIES",
    "categorize",
    "environment_properties",
    "format_properties",
    "executor_info",
    "results_dir",
    "one_allure_formatter",
    "prepare_results_dir",
    "prepare_junit_dir",
    "write_metadata",
    "scenario_labels",
]

RECOVERY_TOO_SLOW = "recovery too slow"
WRITE_LOST = "acknowledged write lost"
SERVICE_HUNG = "service hung"
WRONG_STATUS = "wrong error status"
STACK_FAILED = "stack failed to start"
SUITE_ERROR = "suite error"

SEVERITIES = ("blocker", "critical", "normal", "minor", "trivial")


def _containing(*phrases: str) -> str:
    """A whole-message regex that matches when any phrase (a regex fragment) occurs."""
    return ".*(?:" + "|".join(phrases) + ").*"


# the health wait is the same function before a fault ("Given the stack is healthy") and after it
# ("Then the health endpoint reports healthy within N seconds"); the trace tells them apart
_SETUP_FRAMES = r"\b(?:check_healthy|begin_scenario|ensure_running)\b"
_HEALTH_NOT_HEALTHY = r"the health endpoint did not report healthy within"
# misuse of the Gherkin: the scenario asks for something it never set up
_SUITE_MISUSE = (
    r"no load ran in this scenario",
    re.escape(NO_FAULT),
    r"a load is already running in this scenario",
    r"no (?:users|records) were created in this scenario",
    r"no (?:users|records) exist to (?:collide with|read)",
    r"could not be judged",
)
_STARTUP_EXCEPTIONS = r"support\.stack\.services\.ServiceError: "

#: the rules written to ``categories.json``; several rules may share a name (Allure groups by name)
CATEGORIES: list[dict[str, Any]] = [
    {
        "name": RECOVERY_TOO_SLOW,
        "description": "The service did not serve again within the bound after a fault (or not by the first "
        "request after it), never did, or failed more requests on the way than the scenario allows.",
        "matchedStatuses": ["failed"],
        "messageRegex": _containing(
            r"did not recover within",
            r"never recovered:",
            r"did not show recovery:",
            r"the error rate was .*, not below",
            r"requests? failed after .* into the load",
            r"the first request after the fault (?:got no answer|was answered \d+, not)",
        ),
    },
    {
        "name": RECOVERY_TOO_SLOW,
        "description": "The health endpoint did not report healthy within the bound after a fault.",
        "matchedStatuses": ["failed"],
        "messageRegex": _containing(_HEALTH_NOT_HEALTHY),
        "traceRegex": f"(?!.*{_SETUP_FRAMES}).*",
    },
    {
        "name": WRITE_LOST,
        "description": "A write the API acknowledged is missing or changed in PostgreSQL, a write it refused "
        "was stored anyway, or the API served other content than was written.",
        "matchedStatuses": ["failed"],
        "messageRegex": _containing(
            r"acknowledged writes? lost:",
            r"acknowledged writes? changed:",
            r"answered as not applied exist anyway",
            r"users did not survive",
            r"records that should have survived",
            r"rows were lost",
            r"a failed write left a (?:partial )?row",
            r"the first request after the fault served wrong content",
        ),
    },
    {
        "name": SERVICE_HUNG,
        "description": "Requests took longer than the bound or timed out instead of failing fast.",
        "matchedStatuses": ["failed"],
        "messageRegex": _containing(r"took longer than"),
    },
    {
        "name": WRONG_STATUS,
        "description": "A failure was answered with the wrong status (not 503, no answer at all), or the "
        "health endpoint did not tell the truth about the database.",
        "matchedStatuses": ["failed"],
        "messageRegex": _containing(
            r"not answered with 503",
            r"was expected to be answered",
            r"answer to .* has no JSON body",
            r"the health endpoint did not report the database as unreachable",
        ),
    },
    {
        "name": STACK_FAILED,
        "description": "The stack did not start or was not healthy before any fault was injected.",
        "matchedStatuses": ["failed"],
        "messageRegex": _containing(_HEALTH_NOT_HEALTHY),
        "traceRegex": f".*{_SETUP_FRAMES}.*",
    },
    {
        "name": STACK_FAILED,
        "description": "The stack could not serve the scenario's setup, before any fault.",
        "matchedStatuses": ["failed"],
        "messageRegex": _containing(r"served none of the load's", r"could not create (?:user|record) \d+ of"),
    },
    {
        "name": STACK_FAILED,
        "description": "A service could not be started or did not become ready in time.",
        "matchedStatuses": ["broken", "failed"],
        "messageRegex": _STARTUP_EXCEPTIONS + ".*",
    },
    {
        "name": SUITE_ERROR,
        "description": "The scenario asks for something it never set up.",
        "matchedStatuses": ["failed"],
        "messageRegex": _containing(*_SUITE_MISUSE),
    },
    {
        "name": SUITE_ERROR,
        "description": "The suite itself broke (an exception that is not a failed check).",
        "matchedStatuses": ["broken"],
        "messageRegex": f"(?!{_STARTUP_EXCEPTIONS}).*",
    },
]


def categorize(
    status: str, message: str | None, trace: str | None = None, categories: Sequence[Mapping[str, Any]] = CATEGORIES
) -> list[str]:
    """The names of the categories a result falls into, by Allure's own rules (names deduplicated,
    in rule order); empty when none matches (Allure then says "Product defects" or "Test defects")."""
    names: list[str] = []
    for rule in categories:
        statuses = rule.get("matchedStatuses") or []
        if statuses and status not in statuses:
            continue
        if not _whole_match(rule.get("messageRegex"), message):
            continue
        if not _whole_match(rule.get("traceRegex"), trace):
            continue
        if rule["name"] not in names:
            names.append(rule["name"])
    return names


def _whole_match(pattern: str | None, text: str | None) -> bool:
    if pattern is None:
        return True
    return text is not None and re.fullmatch(pattern, text, re.DOTALL) is not None


# -- environment and executor --------------------------------------------------------

_DISPLAY_NAMES = {
    "python": "Python",
    "postgres": "PostgreSQL",
    "api": "API",
    "docker": "Docker.engine",
    "docker_engine": "Docker.engine",
    "backend": "Backend",
}


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def environment_properties(stack_versions: Mapping[str, str], backend: str) -> dict[str, str]:
    """What ran: the stack's versions (PostgreSQL, Python, the API, the Docker engine where used),
    the backend, and the suite's own tools, as report-friendly names."""
    props: dict[str, str] = {"Backend": backend, "Python": platform.python_version()}
    for key, value in stack_versions.items():
        props[_DISPLAY_NAMES.get(key, key)] = str(value)
    if "API" not in props:
        parts = [
            f"{name} {v}" for name in ("fastapi", "uvicorn", "sqlalchemy") if (v := _package_version(name)) is not None
        ]
        props["API"] = "users-api (" + ", ".join(parts) + ")" if parts else "users-api"
    for name in ("behave", "allure-behave"):
        version = _package_version(name)
        if version:
            props[name] = version
    props["OS"] = f"{platform.system()} {platform.release()} ({platform.machine()})"
    return props


def _escape(text: str, key: bool) -> str:
    out = []
    for i, ch in enumerate(text):
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch in "=:#!" and key or (ch == " " and (key or i == 0)):
            out.append("\\" + ch)
        elif ord(ch) > 0x7E or ord(ch) < 0x20:
            # Java reads .properties as ISO-8859-1: anything else travels as \\uXXXX
            out.append("".join(f"\\u{unit:04x}" for unit in _utf16_units(ch)))
        else:
            out.append(ch)
    return "".join(out)


def _utf16_units(ch: str) -> list[int]:
    data = ch.encode("utf-16-be")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def format_properties(props: Mapping[str, str]) -> str:
    """``props`` as a Java ``.properties`` text (escaped as ``java.util.Properties.load`` reads it)."""
    return "".join(f"{_escape(k, True)}={_escape(str(v), False)}\n" for k, v in props.items())


def executor_info(environ: Mapping[str, str] | None = None, now: float | None = None) -> dict[str, Any]:
    """``executor.json``: the CI system that ran the suite (GitHub Actions, GitLab CI, Jenkins) or a local run."""
    env = os.environ if environ is None else environ
    now = time.time() if now is None else now
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
    info: dict[str, Any] = {
        "name": "local run",
        "type": "local",
        "buildName": f"local run {stamp}",
        "buildOrder": int(now),
        "reportName": "Chaos and resilience suite",
    }
    if env.get("GITHUB_ACTIONS") == "true":
        url = f"{env.get('GITHUB_SERVER_URL', 'https://github.com')}/{env.get('GITHUB_REPOSITORY', '')}"
        info.update(
            name="GitHub Actions",
            type="github",
            buildName=f"{env.get('GITHUB_WORKFLOW', 'workflow')} #{env.get('GITHUB_RUN_NUMBER', '?')}",
            buildUrl=f"{url}/actions/runs/{env.get('GITHUB_RUN_ID', '')}",
            buildOrder=int(env.get("GITHUB_RUN_NUMBER", "0") or 0) or int(now),
        )
    elif env.get("GITLAB_CI") == "true":
        info.update(
            name="GitLab CI",
            type="gitlab",
            buildName=f"pipeline #{env.get('CI_PIPELINE_IID', '?')}",
            buildUrl=env.get("CI_JOB_URL", ""),
            buildOrder=int(env.get("CI_PIPELINE_IID", "0") or 0) or int(now),
        )
    elif env.get("JENKINS_URL"):
        info.update(
            name="Jenkins",
            type="jenkins",
            buildName=env.get("BUILD_TAG", "build"),
            buildUrl=env.get("BUILD_URL", ""),
            buildOrder=int(env.get("BUILD_NUMBER", "0") or 0) or int(now),
        )
    return info


# -- the results folder -------------------------------------------------------------


def results_dir(formats: Sequence[str], outfiles: Sequence[str]) -> Path | None:
    """Where the Allure formatter writes, from behave's ``format`` and ``outfiles`` lists (paired by
    position): the last one given (the command line's over behave.ini's, as :func:`one_allure_formatter`
    keeps); None when the run has no Allure formatter."""
    found = None
    for i, name in enumerate(formats):
        if "allure_behave" in name and i < len(outfiles) and outfiles[i] not in ("", "-"):
            found = Path(outfiles[i])
    return found


def one_allure_formatter(formatters: Sequence[Any]) -> list[Any]:
    """behave's formatters with one Allure formatter left: the last one that writes to a folder.

    behave adds the command line's ``-f`` to the formatters behave.ini lists, and two Allure
    formatters in one run break each other (a ``KeyError`` inside allure-commons). The others are
    closed, which takes their listeners out of Allure's plugin manager.
    """
    allure = [f for f in formatters if type(f).__name__ == "AllureFormatter"]
    if len(allure) < 2:
        return list(formatters)
    keep = next((f for f in reversed(allure) if getattr(f.stream_opener, "name", None)), allure[-1])
    for formatter in allure:
        if formatter is not keep:
            formatter.close()
    return [f for f in formatters if f not in allure or f is keep]


def prepare_junit_dir(path: Path | None) -> int:
    """Remove the JUnit XML files of earlier runs from ``path`` (None: JUnit is off); returns how many went."""
    if path is None or not path.is_dir():
        return 0
    stale = list(path.glob("*.xml"))
    for item in stale:
        item.unlink(missing_ok=True)
    return len(stale)


_STALE = (
    "*-result.json",
    "*-container.json",
    "*-attachment*",
    "environment.properties",
    "categories.json",
    "executor.json",
    "summary.json",
)


def prepare_results_dir(path: Path | None) -> int:
    """Remove the results of earlier runs from ``path`` (keeping ``history/`` for the trends); returns
    how many files went (0 for no folder). The folder is created if missing."""
    if path is None:
        return 0
    path.mkdir(parents=True, exist_ok=True)
    removed = 0
    for pattern in _STALE:
        for item in path.glob(pattern):
            if item.is_file():
                item.unlink(missing_ok=True)
                removed += 1
            elif item.is_dir():
                shutil.rmtree(item, ignore_errors=True)
    return removed


def write_metadata(path: Path | None, stack_versions: Mapping[str, str], backend: str) -> None:
    """Write ``environment.properties``, ``categories.json`` and ``executor.json`` into ``path``
    (nothing when the run has no results folder)."""
    if path is None:
        return
    path.mkdir(parents=True, exist_ok=True)
    (path / "environment.properties").write_text(
        format_properties(environment_properties(stack_versions, backend)), encoding="ascii"
    )
    (path / "categories.json").write_text(json.dumps(CATEGORIES, indent=2))
    (path / "executor.json").write_text(json.dumps(executor_info(), indent=2))


# -- labels from where a feature lives and how it is tagged ---------------------------------


def scenario_labels(
    filename: str, feature: str, tags: Sequence[str], features_root: str = "features"
) -> list[tuple[str, str]]:
    """Allure labels allure-behave does not set itself, as ``(name, value)`` pairs.

    The feature family is the folder under ``features_root`` (``features/database/x.feature`` ->
    ``database``): it becomes the ``epic`` (Behaviors tab) and the ``parentSuite`` (Suites tab),
    the feature name the ``suite``. ``@severity.<level>`` or ``@severity:<level>`` sets the
    severity (allure-behave itself only knows the bare ``@critical`` form).
    """
    labels: list[tuple[str, str]] = []
    parts = Path(filename).parts
    family = ""
    if features_root in parts:
        below = parts[parts.index(features_root) + 1 : -1]
        family = below[0] if below else ""
    if family:
        title = family.replace("_", " ").replace("-", " ")
        title = title[:1].upper() + title[1:]
        labels += [("epic", title), ("parentSuite", title)]
    if feature:
        labels.append(("suite", feature))
    for tag in tags:
        match = re.fullmatch(r"severity[.:](\w+)", tag)
        if match and match.group(1).lower() in SEVERITIES:
            labels.append(("severity", match.group(1).lower()))
    return labels
