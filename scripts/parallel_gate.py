"""behave's runner with a gate before the ``@serial`` scenarios, for the parallel runner's stacks.

``scripts/parallel.py`` gives the stack expected to finish its share first the ``@serial`` scenarios
too, after its share (``behave --runner scripts.parallel_gate:GatedRunner``), so they run on a stack
that is already up instead of one started for them alone. Before the first feature whose selected
scenarios carry ``@serial``, this runner waits until the file named by ``CHAOS_PARALLEL_GATE``
exists: the parallel runner makes it once every other stack's ``behave`` has exited (its scenarios
done, its stack stopped), so the ``@serial`` scenarios still have the machine to themselves. The wait
happens before behave reports the feature's first scenario, so no scenario's time includes it; it
gives up after ``CHAOS_PARALLEL_GATE_S`` seconds (the run's ``--timeout``).

Every stack's runner also waits once, before its first feature (its stack started by ``before_all``),
until all stacks are up: it makes the file ``CHAOS_PARALLEL_UP`` names, and waits for
``CHAOS_PARALLEL_START``, which the parallel runner makes once every stack has made its file (or
exited). So no stack's first scenario shares the machine with another stack's start (PostgreSQL's
initdb, the API's imports): those first scenarios failed their bounds while the other stacks started.
Without these variables it is behave's own runner.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from behave.runner import Runner

from support.core.waiting import WaitTimeout, wait_until

__all__ = ["GATE", "GATE_S", "UP", "START", "SERIAL_TAG", "GatedRunner", "serial_feature"]

GATE = "CHAOS_PARALLEL_GATE"
UP = "CHAOS_PARALLEL_UP"
START = "CHAOS_PARALLEL_START"
GATE_S = "CHAOS_PARALLEL_GATE_S"
SERIAL_TAG = "serial"
_POLL_S = 0.1  # s between looks at the gate file


def serial_feature(feature: Any, config: Any) -> bool:
    """Whether a selected scenario of behave's ``feature`` carries ``@serial``."""
    return any(SERIAL_TAG in s.effective_tags for s in feature.walk_scenarios() if s.should_run(config))


class GatedRunner(Runner):
    """behave's Runner, waiting at the gate (see the module doc) before the first ``@serial`` feature."""

    def __init__(self, config: Any, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        gate = os.environ.get(GATE)
        self._gate = Path(gate) if gate else None
        self._gate_s = float(os.environ.get(GATE_S, "3600"))
        up, start = os.environ.get(UP), os.environ.get(START)
        self._start = (Path(up), Path(start)) if up and start else None

    def _wait(self, gate: Path, what: str) -> None:
        try:
            wait_until(gate.exists, self._gate_s, what, interval=_POLL_S)
        except WaitTimeout as error:  # the run's --timeout: as a stop, not a traceback
            print(f"chaos-suite: {error}", flush=True)
            self.abort(reason=f"{what}: the gate did not open")

    def run_hook_with_capture(self, hook_name: str, *args: Any, **kwargs: Any) -> bool:
        if hook_name == "before_feature" and self._start is not None:
            (up, start), self._start = self._start, None
            up.touch()
            self._wait(start, "every stack started")
        if hook_name == "before_feature" and self._gate is not None and serial_feature(args[0], self.config):
            gate, self._gate = self._gate, None  # once open, it stays open
            print(f"chaos-suite: waiting for the other stacks to finish before the @{SERIAL_TAG} scenarios", flush=True)
            self._wait(gate, "the other stacks finished (the @serial gate)")
        return super().run_hook_with_capture(hook_name, *args, **kwargs)
