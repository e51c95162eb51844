"""docs/steps.md is current with behave's step registry, and lists what ``behave --steps-catalog`` lists."""

from __future__ import annotations

import re
import subprocess
import sys

from support import REPO_ROOT

COMMAND = ".venv/bin/python -m scripts.steps_catalog"


def _run(*argv: str) -> subprocess.CompletedProcess:
    # a process of its own: behave's step registry is global, and a second load of steps/ would be ambiguous
    return subprocess.run([sys.executable, *argv], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def test_docs_steps_md_is_current():
    done = _run("-m", "scripts.steps_catalog", "--check")
    assert done.returncode == 0, f"docs/steps.md is not current with steps/: run `{COMMAND}` and commit it"


def test_behave_steps_catalog_lists_the_same_steps():
    done = _run("-m", "behave", "--steps-catalog", "--no-summary")
    assert done.returncode == 0, done.stdout + done.stderr
    keyword = {"Given": "Given", "When": "When", "Then": "Then", "*": "Given/When/Then"}
    untyped = re.compile(r"\{(\w*):\w+\}")
    listed = {
        keyword[first] + " " + untyped.sub(r"{\1}", rest)
        for first, _, rest in (line.partition(" ") for line in done.stdout.splitlines())
        if first in keyword
    }
    documented = set(re.findall(r"^\| `([^`]+)` \|", (REPO_ROOT / "docs" / "steps.md").read_text(), re.M))
    assert listed, done.stdout
    assert listed == documented, (
        f"only in behave --steps-catalog: {sorted(listed - documented)}; only in docs/steps.md: "
        f"{sorted(documented - listed)}; run `{COMMAND}`"
    )


def test_the_catalog_says_types_units_and_backends():
    text = (REPO_ROOT / "docs" / "steps.md").read_text()
    assert "| `When {service} is paused for {seconds}` | `service`: Service (" in text
    assert "`seconds`: Duration (A duration with its unit, in seconds)" in text
    row = next(line for line in text.splitlines() if line.startswith("| `When {service} is killed`"))
    assert "attached: refused" in row, row
