"""The foundation every layer stands on: settings, waiting with a deadline, free ports, redaction, run directories.

Layer 1 of the library: imports nothing else of ``support`` (see ``support/__init__.py`` for the order).
"""
