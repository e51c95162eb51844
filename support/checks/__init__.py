"""Judgements: pure functions over the history and the fault timeline, and the checks on records and health.

Every failed property raises :class:`support.checks.verdict.CheckFailed`. Layer 7:
may import every layer below (``core`` to ``load``).
"""
