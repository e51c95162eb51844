"""A replicated database seen by roles: which node is the primary, which replicate, and what each accepted.

``view``: one look at the nodes (Patroni's REST answer, ``pg_is_in_recovery()`` over
the suite's own direct connections); ``watch``: those looks taken in the background
all scenario long, and what they show (who was primary when, overlapping
writers); ``controller``: the waits the Then steps make on roles (a new primary, a
rejoined node, healthy replicas) and the read-back of acknowledged writes on
every node. Between ``backends`` (which run the nodes) and ``faults`` (which break them).
"""
