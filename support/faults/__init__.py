"""Faults: objects with ``inject()`` and an idempotent ``heal()``, their ledger, timeline and journal, one module per family.

Layer 5: may import ``core``, ``stack``, ``proxy`` and ``backends``.
"""
