"""Reading the stamped service logs the process backend writes."""

from __future__ import annotations

from pathlib import Path

__all__ = ["read_stamped_log"]


def read_stamped_log(path: Path, since: float | None = None, limit_bytes: int = 2_000_000) -> str:
    """Lines of a log whose lines start with a wall-clock stamp, from epoch second ``since`` on.

    Only the last ``limit_bytes`` bytes are read, so a long run's log stays cheap.
    """
    if not path.exists():
        return ""
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - limit_bytes))
        data = handle.read().decode("utf-8", "replace")
    if since is None:
        return data
    kept = []
    for line in data.splitlines(keepends=True):
        stamp, _, _ = line.partition(" ")
        try:
            if float(stamp) < since:
                continue
        except ValueError:
            pass  # an unstamped continuation line belongs to the line before it
        kept.append(line)
    return "".join(kept)
