"""Keeping secrets out of evidence and logs."""

from __future__ import annotations

import re

__all__ = ["redact"]

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+@", re.I)
_KV_PASSWORD = re.compile(r"(?P<key>\b(?:password|passwd|pwd)\s*[=:]\s*)(?P<q>['\"]?)[^\s'\"]+(?P=q)", re.I)


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with passwords in URLs, ``password=...`` pairs and the given secrets masked."""
    text = _URL_PASSWORD.sub(r"\g<scheme>***@", text)
    text = _KV_PASSWORD.sub(r"\g<key>***", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
