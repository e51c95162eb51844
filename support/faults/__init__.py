"""Faults: objects with ``inject()`` and an idempotent ``heal()``, their ledger, timeline and journal.

- ``base``       the fault contract (:class:`Fault`): what the ledger, the journal and the checkers read
- ``factory``    :class:`FaultFactory`, ``context.chaos.faults``: every fault made from the stack and settings
- ``process``    a service restarted, killed, stopped or paused; the whole stack restarted
- ``network``    a proxied link slowed, cut or reset (Toxiproxy's vocabulary)
- ``database``   PostgreSQL from the inside: sessions terminated, a table locked, read-only, slow statements
- ``slots``      every connection slot taken
- ``admin``      the superuser connections faults use, and :func:`run_heal`, which makes a heal win
- ``ledger``     the scenario's faults in order, their windows, the journal; heals everything at the end
- ``timeline``   :class:`FaultWindow`, the fault timeline the checkers read
- ``residues``   what a killed run left in a database that outlives it, healed by the next run

Layer 5: may import ``core``, ``stack``, ``proxy`` and ``backends``.
"""
