"""The full ``@chaos`` run in series and on parallel stacks, side by side: both times, the ratio, the verdicts.

    python bench/parallel_time.py [--processes 3] [--rounds 1] [--tags @chaos] [--no-durations]

Each round runs ``python -m behave --tags=@chaos`` (one stack, the scenarios one after another) and
then ``python -m scripts.parallel --processes N --tags=@chaos`` (N stacks at once, ``@serial``
scenarios alone at the end), both from the repository with its behave.ini, every report written
under /tmp/chaos-suite-bench. The parallel run's results folder starts with the serial run's
``summary.json``, as a user's does after an earlier run, so its shares are balanced by measured
durations (``--no-durations``: by the scenarios' estimates, as a first run is). Wall time is launch to exit. The verdicts are each scenario's status
in the run's ``summary.json``; a round counts as "same verdicts" when every scenario got the same
status in both runs. The load average (1 min) is printed before and after each run: the machine's
other work moves the times, not the ratio's sense.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, WORK_ROOT, machine, table  # noqa: E402

ALLURE = "allure_behave.formatter:AllureFormatter"
RUN_TIMEOUT = 1800.0  # s: a run that takes longer is stopped


def _run(
    argv: list[str], work: Path, durations: Path | None = None
) -> tuple[float, int, dict[str, str], tuple[float, float]]:
    """Wall seconds, exit code, verdicts by scenario name and the load average before/after of one run;
    ``durations``: an earlier run's summary.json put in the results folder first."""
    work.mkdir(parents=True)
    if durations is not None and durations.is_file():
        (work / "allure").mkdir()
        shutil.copy(durations, work / "allure" / "summary.json")
    outputs = ["-f", ALLURE, "-o", str(work / "allure"), "--junit-directory", str(work / "junit")]
    before = os.getloadavg()[0]
    started = time.monotonic()
    with open(work / "output.log", "wb") as log:
        done = subprocess.run(
            [*argv, *outputs, "-D", f"work_root={WORK_ROOT}"],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=RUN_TIMEOUT,
            check=False,
        )
    wall = time.monotonic() - started
    try:
        rows = json.loads((work / "allure" / "summary.json").read_text())["rows"]
    except (OSError, ValueError, KeyError):
        rows = []
    return wall, done.returncode, {r["name"]: r["status"] for r in rows}, (before, os.getloadavg()[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=3, help="stacks at once in the parallel run (default 3)")
    parser.add_argument("--rounds", type=int, default=1, help="serial + parallel pairs to run (default 1)")
    parser.add_argument("--tags", default="@chaos")
    parser.add_argument("--keep", action="store_true", help="keep the reports under /tmp/chaos-suite-bench")
    parser.add_argument(
        "--no-durations", action="store_true", help="balance the parallel run by estimates, not the serial run's times"
    )
    args = parser.parse_args()
    work = Path(WORK_ROOT) / f"bench-parallel-{os.getpid()}"
    print(
        f"{machine()}; {os.cpu_count()} CPUs; {args.rounds} round(s) of serial vs {args.processes} stacks", flush=True
    )
    rows = []
    try:
        for n in range(1, args.rounds + 1):
            serial = _run([sys.executable, "-m", "behave", f"--tags={args.tags}"], work / f"round-{n}" / "serial")
            print(f"  round {n} serial: {serial[0]:.1f} s, exit {serial[1]}, {len(serial[2])} scenarios", flush=True)
            par = _run(
                [sys.executable, "-m", "scripts.parallel", "--processes", str(args.processes),
                 "--logs", str(work / f"round-{n}" / "logs"), f"--tags={args.tags}"],
                work / f"round-{n}" / "parallel",
                None if args.no_durations else work / f"round-{n}" / "serial" / "allure" / "summary.json",
            )  # fmt: skip
            print(f"  round {n} parallel: {par[0]:.1f} s, exit {par[1]}, {len(par[2])} scenarios", flush=True)
            log = (work / f"round-{n}" / "parallel" / "output.log").read_text(errors="replace").splitlines()
            for line in (line for line in log if line.startswith("chaos-suite: stack")):  # the critical path
                print(f"    {line.removeprefix('chaos-suite: ').split('; log ')[0]}", flush=True)
            differ = sorted(
                name for name in serial[2].keys() | par[2].keys() if serial[2].get(name) != par[2].get(name)
            )
            for name in differ:
                print(f"    differs: {name}: serial {serial[2].get(name)}, parallel {par[2].get(name)}", flush=True)
            passed = (sum(s == "passed" for s in serial[2].values()), sum(s == "passed" for s in par[2].values()))
            rows.append(
                [
                    str(n),
                    f"{serial[0]:.1f}",
                    f"{par[0]:.1f}",
                    f"{par[0] / serial[0]:.2f}",
                    f"{passed[0]}/{len(serial[2])}",
                    f"{passed[1]}/{len(par[2])}",
                    "yes" if not differ and serial[2] else f"no ({len(differ)})",
                    f"{serial[3][0]:.1f}-{serial[3][1]:.1f} / {par[3][0]:.1f}-{par[3][1]:.1f}",
                ]
            )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print()
    headers = ["round", "serial s", f"{args.processes} stacks s", "ratio", "serial passed", "parallel passed"]
    print(table([*headers, "same verdicts", "load avg serial / parallel"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
