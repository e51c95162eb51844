"""Finding the Debian-packaged programs a replicated database runs on (Patroni, etcd, HAProxy)."""

from __future__ import annotations

import shutil

from support.stack.services import ServiceError

__all__ = ["debian_tool"]


def debian_tool(binary: str, what: str, package: str) -> str:
    """The path of ``binary`` (on the PATH, else in /usr/bin or /usr/sbin); one line naming Debian's ``package``
    otherwise."""
    found = shutil.which(binary) or shutil.which(binary, path="/usr/bin:/usr/sbin:/usr/local/sbin")
    if found is None:
        raise ServiceError(
            f"a replicated database needs {what} and there is no {binary} on the PATH: install Debian's {package} "
            "(bash setup.sh installs requirements-debian.txt)"
        )
    return found
