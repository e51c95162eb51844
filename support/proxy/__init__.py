"""The TCP fault proxy between services (Toxiproxy's vocabulary), its client, and the links it carries.

Layer 3: may import ``support.core`` and ``support.stack``.

The proxy itself, lowest module first:

- ``toxics``    what a toxic is: the vocabulary, its attributes, validation, ``ProxyApiError``
- ``pipe``      one direction of a connection: bytes held, paced or cut by the toxics of its stream
- ``relay``     the data plane: listeners (``Proxy``) and connections joined to their upstream
- ``control``   ``FaultProxyServer``: every proxy behind a Toxiproxy-style HTTP API
- ``__main__``  the process: ``python -m support.proxy --control 127.0.0.1:0``

Driving it from the suite: ``client`` (``ProxyServer`` starts the process, ``ProxyClient``
speaks its API) and ``link`` (the API-to-PostgreSQL link through it).
"""
