"""The TCP fault proxy between services (Toxiproxy's vocabulary), its client, and the links it carries.

Layer 3: may import ``support.core`` and ``support.stack``.
"""
