"""Faults: objects with ``inject()`` and an idempotent ``heal()``, their ledger, timeline and journal.

Layer 5: may import ``core``, ``stack``, ``proxy`` and ``backends``.
"""
