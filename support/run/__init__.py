"""One run of the suite: its settings, stack and per-scenario state, start-up errors, the Gherkin parameter types.

Layer 9, the top: what ``environment.py`` and ``steps/`` call.
"""
