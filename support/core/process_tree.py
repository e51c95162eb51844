"""The processes below a process, read from /proc (Linux)."""

from __future__ import annotations

import os

__all__ = ["descendants"]


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``, parents before their children (from /proc)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop(0)
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as handle:
                    children = [int(c) for c in handle.read().split()]
            except OSError:
                continue
            found.extend(children)
            todo.extend(children)
    return found
