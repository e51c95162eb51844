"""scripts/report.sh with the real Allure tool: the report holds the chart, sorts failures into the
product's categories (Java applies our regexes as categorize() does), and keeps its history for trends."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from support.evidence import report_meta
from support.evidence.chart import timeline_png
from support.faults.timeline import FaultWindow
from support.load.history import OK, Request

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "reports" / ".tools" / "node_modules" / ".bin" / "allure"

pytestmark = pytest.mark.skipif(
    shutil.which("java") is None or (not TOOL.exists() and shutil.which("npm") is None),
    reason="needs Java and the Allure tool (or npm to install it: scripts/report.sh does)",
)

FAILURES = {
    "Slow recovery": (
        "support.checks.verdict.CheckFailed: the API did not recover within 1 s: recovered after 3.0 s "
        "(outage 2.9 s from 4.0 s to 6.9 s, 30 failed requests)\n",
        report_meta.RECOVERY_TOO_SLOW,
    ),
    "Lost write": (
        "support.checks.verdict.CheckFailed: 1 acknowledged write lost: k1 (of 5 acknowledged writes; unknown "
        "writes: 0 present, 0 absent)\n",
        report_meta.WRITE_LOST,
    ),
    "Broken suite": ("KeyError: 'x'\n", report_meta.SUITE_ERROR),
}


def _result(results: Path, name: str, status: str, message: str | None, chart: bytes | None) -> None:
    attachments = []
    if chart is not None:
        source = f"{uuid.uuid4()}-attachment.png"
        (results / source).write_bytes(chart)
        attachments.append({"name": "timeline chart", "source": source, "type": "image/png"})
    result = {
        "uuid": str(uuid.uuid4()),
        "historyId": name,
        "name": name,
        "fullName": f"Feature: {name}",
        "status": status,
        "stage": "finished",
        "start": 1_700_000_000_000,
        "stop": 1_700_000_001_000,
        "labels": [{"name": "feature", "value": "Outages"}, {"name": "epic", "value": "Database"}],
        "attachments": attachments,
        "steps": [],
    }
    if message is not None:
        result["statusDetails"] = {"message": message, "trace": '  File "steps/checks.py", line 7, in step\n'}
    (results / f"{result['uuid']}-result.json").write_text(json.dumps(result))


def _generate(results: Path, report: Path) -> None:
    env = dict(os.environ, ALLURE_RESULTS=str(results), ALLURE_REPORT=str(report))
    done = subprocess.run(
        [str(REPO / "scripts" / "report.sh")], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == f"{report}/index.html"


def test_report_has_the_chart_the_categories_and_keeps_history(tmp_path) -> None:
    results, report = tmp_path / "allure-results", tmp_path / "allure-report"
    results.mkdir()
    history = [Request("read", f"k{i}", 10 + i / 10, 10 + i / 10, 10.01 + i / 10, 200, "", OK) for i in range(50)]
    chart = timeline_png(history, [FaultWindow("restart", "postgres", 12.0, 12.2, True)])
    _result(results, "Passing with a chart", "passed", None, chart)
    for name, (message, _) in FAILURES.items():
        _result(results, name, "broken" if name == "Broken suite" else "failed", message, None)
    report_meta.write_metadata(results, {"postgres": "15.8"}, "process")

    _generate(results, report)
    assert (report / "index.html").is_file()
    cases = [json.loads(p.read_text()) for p in (report / "data" / "test-cases").glob("*.json")]
    charted = [c for c in cases if c["name"] == "Passing with a chart"][0]
    source = [a["source"] for a in charted["testStage"]["attachments"] if a["name"] == "timeline chart"][0]
    assert (report / "data" / "attachments" / source).read_bytes() == chart

    categories = json.loads((report / "data" / "categories.json").read_text())
    found = {group["name"]: sorted(leaf["name"] for leaf in _leaves(group)) for group in categories["children"]}
    assert found == {category: [name] for name, (_, category) in FAILURES.items()}
    environment = json.loads((report / "widgets" / "environment.json").read_text())
    assert {"name": "PostgreSQL", "values": ["15.8"]} in environment

    # a second run: the first report's history travels into the results, so the trend has two points
    _generate(results, report)
    trend = json.loads((report / "history" / "history-trend.json").read_text())
    assert len(trend) == 2


def _leaves(group: dict) -> list[dict]:
    children = group.get("children")
    if children is None:
        return [group]
    return [leaf for child in children for leaf in _leaves(child)]
