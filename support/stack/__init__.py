"""The system under test as data: the stack file, the workload it drives, the service contract, readiness, SQL access.

Layer 2: may import ``support.core``.
"""
