"""The load: its spec, the controller that runs the worker process, the worker, its HTTP client, the history.

- ``spec``        what load to send (:class:`LoadSpec`), validated
- ``controller``  starts the worker process, watches it, stops it, reads its history
- ``worker``      the process that sends the load (``python -m support.load.worker``)
- ``mix``         which of the workload's operations the worker sends next, and how it judges the answer
- ``tokens``      the worker's headers and auth token (fetched before the load, again after a 401)
- ``os_resources`` what that process asks of the OS: real-time scheduling, open files, CPU time
- ``client``      the worker's HTTP/1.1 client
- ``history``     one record per request, its CSV form, and the one percentile
- ``recovery``    the recovery rule, applied live by the worker and to the history by the checks
- ``protocol``    what the worker and the Locust master share: the stdin commands, the tally of requests, the history file
- ``engine``      which engine sends a scenario's load (``load_engine``): the native worker or Locust
- ``locust_engine`` starts Locust's master and workers behind the controller's :class:`LoadRun`
- ``locust_master`` the Locust master (``python -m support.load.locust_master``), the native worker's protocol
- ``locustfile``  what each Locust worker runs: the user class and its hooks (imported only in Locust's processes)

Layer 6: may import ``core``, ``stack``, ``proxy``, ``backends`` and ``faults``.
"""
