"""What the load's HTTP link costs: the reference stack's throughput with the load direct and through the link.

    python bench/load_link_overhead.py [--seconds 3] [--rounds 3] [--users 8] [--rate 150]

Starts the reference stack on the process backend, with the HTTP link the suite
makes between the load and the API (``support.proxy.link.add_load_link``), and
runs the suite's own load worker against the API directly and through the link,
in rounds that alternate so drift hits both alike:

- ``closed``: ``--users`` concurrent users, each sending its next request when
  the last one ends: the most the stack serves (requests/s);
- ``open``: ``--rate`` requests/s on a schedule, as the scenarios load it:
  p50/p99 latency and errors.

Prints each round, then the ratios link/direct last.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.backends.process.backend import start_process_stack  # noqa: E402
from support.core.config import load_settings  # noqa: E402
from support.load.controller import start_load  # noqa: E402
from support.load.history import OK, percentile  # noqa: E402
from support.load.spec import LoadSpec  # noqa: E402
from support.proxy.link import add_load_link  # noqa: E402


def run_round(url: str, spec: LoadSpec, seconds: float, work: Path) -> dict:
    load = start_load(spec.with_(base_url=url, run_id=secrets.token_hex(4)), work)  # fresh keys: no 409s
    started = time.monotonic()
    # the round's length is what is measured, not a synchronisation
    time.sleep(seconds)
    history = load.stop()
    elapsed = time.monotonic() - started
    ok = [r for r in history if r.outcome == OK]
    latencies = [r.latency for r in history]
    return {
        "rps": len(ok) / elapsed,
        "errors": len(history) - len(ok),
        "p50_ms": (percentile(latencies, 50) or 0) * 1000,
        "p99_ms": (percentile(latencies, 99) or 0) * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--rate", type=float, default=150.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="load-link-bench-", dir="/tmp"))
    root.chmod(0o755)
    settings = load_settings({"work_root": str(root)})
    stack = start_process_stack(settings, root / "run")
    try:
        add_load_link(stack, root / "run")
        workload = stack.workload.to_dict()
        models = {
            "closed": LoadSpec.closed_users(stack.api_url, args.users, workload=workload),
            "open": LoadSpec.open_rate(stack.api_url, args.rate, workload=workload),
        }
        totals: dict[tuple[str, str], list[dict]] = {}
        for index in range(args.rounds):
            for model, spec in models.items():
                order = [("direct", stack.api_url), ("link", stack.load_url)]
                for way, url in order if index % 2 == 0 else order[::-1]:
                    figures = run_round(url, spec, args.seconds, root / f"{model}-{way}-{index}")
                    totals.setdefault((model, way), []).append(figures)
                    shown = ", ".join(f"{k} {v:.1f}" for k, v in figures.items())
                    print(f"round {index + 1} {model:6} {way:6} {shown}", flush=True)
        print()
        for model in models:
            direct = totals[(model, "direct")]
            link = totals[(model, "link")]
            for key in ("rps", "p50_ms", "p99_ms"):
                d = sum(f[key] for f in direct) / len(direct)
                n = sum(f[key] for f in link) / len(link)
                print(
                    f"{model:6} {key:7} direct {d:8.1f}  link {n:8.1f}  link/direct {n / d if d else float('nan'):.2f}"
                )
            print(f"{model:6} errors  direct {sum(f['errors'] for f in direct)}  link {sum(f['errors'] for f in link)}")
    finally:
        stack.close()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
