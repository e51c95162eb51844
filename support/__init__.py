"""The chaos suite's library: plain Python, importable and tested without behave.

Packages, lowest layer first; a package imports only from those before it
(``tests/test_layers.py`` checks it):

1. ``core``      settings, waiting, ports, redaction, run directories
2. ``stack``     the stack file, workload, service contract, readiness, SQL access
3. ``proxy``     the TCP fault proxy, its client and the links
4. ``backends``  process, docker, attached: what runs the stack
   ``cluster``   a replicated database by roles: who is primary, the watch, the waits on roles
5. ``faults``    fault objects, the ledger, timeline and journal
6. ``load``      load spec, controller, worker, HTTP client, history
7. ``checks``    judgements over history, records and health
8. ``evidence``  Allure attachments, chart, summary, report metadata, progress line
9. ``run``       the run and the scenario state that hooks and steps use
"""

from pathlib import Path

#: the suite's repository: where the stack, the features and the library live
REPO_ROOT = Path(__file__).resolve().parents[1]

#: the layers of the library, lowest first (a layer imports only from the ones before it)
LAYERS = ("core", "stack", "proxy", "backends", "cluster", "faults", "load", "checks", "evidence", "run")
