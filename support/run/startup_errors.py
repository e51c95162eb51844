"""The errors a run can meet before any scenario starts, shown as one line each."""
from __future__ import annotations

from support.core.config import SettingsError
from support.backends.process.pg_binaries import PgNotFound
from support.stack.services import ServiceError
from support.stack.stack import UnknownService
from support.stack.stack_file import StackFileError

__all__ = ["STARTUP_ERRORS", "one_line"]

STARTUP_ERRORS = (SettingsError, StackFileError, PgNotFound, ServiceError, UnknownService, OSError)


def one_line(error: BaseException) -> str:
    """The error's message on one line (logs attached to it go to the evidence, not the terminal)."""
    text = " ".join(str(error).split())
    return text or type(error).__name__
