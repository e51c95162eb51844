"""The compose backend: the user's own Compose project, run by the real Docker Compose v2 CLI.

A compose file as ``stack_file`` (or a stack file with ``[compose] file``) selects
it; an ``x-chaos:`` section in the compose file says what the suite needs to know
(see :mod:`support.backends.compose.project`).
"""
