"""The evidence adapter: the one module of ``support/`` that talks to Allure.

Everything it attaches is computed elsewhere in ``support/`` and redacted here,
so the library stays testable without a report.
"""
from __future__ import annotations

import gzip
import json
from typing import TYPE_CHECKING

import allure

from support.history import to_csv
from support.redact import redact

if TYPE_CHECKING:
    from support.scenario import ScenarioState

__all__ = ["attach_scenario"]

_LOG_MARGIN_S = 5.0
_MAX_INLINE_CSV = 1_000_000


def _attach_text(state: "ScenarioState", text: str, name: str, kind=allure.attachment_type.TEXT) -> None:
    allure.attach(redact(text, state.stack.secrets), name=name, attachment_type=kind)


def attach_scenario(state: "ScenarioState", failed: bool) -> None:
    """Attach the scenario's figures, fault ledger, service logs around the faults and raw history."""
    figures = state.figures()
    if figures:
        _attach_text(state, json.dumps(figures, indent=2), "figures.json", allure.attachment_type.JSON)
    ledger = state.ledger.as_records()
    if ledger:
        _attach_text(state, json.dumps(ledger, indent=2), "fault ledger.json", allure.attachment_type.JSON)
    if state.notes:
        _attach_text(state, json.dumps(state.notes, indent=2, default=str), "notes.json",
                     allure.attachment_type.JSON)
    if ledger or failed:
        since = min((r["injected_at"] for r in ledger), default=None)
        since = None if since is None else since - _LOG_MARGIN_S
        for name in state.stack.names:
            logs = state.stack.service(name).logs(since)
            _attach_text(state, logs[-200_000:], f"{name} log")
    if state.history:
        csv_text = redact(to_csv(state.history), state.stack.secrets)
        if len(csv_text) > _MAX_INLINE_CSV:
            allure.attach(gzip.compress(csv_text.encode()), name="history.csv.gz", extension="csv.gz")
        else:
            allure.attach(csv_text, name="history.csv", attachment_type=allure.attachment_type.CSV)
