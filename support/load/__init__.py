"""The load: its spec, the controller that runs the worker process, the worker, its HTTP client, the history.

Layer 6: may import ``core``, ``stack``, ``proxy``, ``backends`` and ``faults``.
"""
