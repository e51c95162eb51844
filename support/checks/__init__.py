"""Judgements: every property a Then step checks, one module per concept; each failure raises
:class:`support.checks.verdict.CheckFailed` with a message worded by :mod:`support.checks.messages`.

Pure functions over the load's history and the fault timeline:

- ``recovery``       when the service recovered (the rule is :mod:`support.load.recovery`'s)
- ``error_rates``    error rates and the phases before, during and after the faults
- ``latency``        requests slower than a bound, the longest silence
- ``statuses``       failures answered 503, failures after a moment
- ``durability``     acknowledged writes read back from the database
- ``during_faults``  reads against writes, and answer times, while a fault lasts
- ``metrics``        all of the figures above as JSON for the evidence

Checks that ask the stack: ``records`` (the workload's records, through the API
and SQL), ``health`` (the health endpoint, awaited with a deadline) and
``processing`` (acknowledged writes processed by a worker, by the workload's SQL).

Layer 7: may import every layer below (``core`` to ``load``).
"""
