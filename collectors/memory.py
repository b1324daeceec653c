"""Resident memory of processes, with psutil when present and /proc otherwise."""

from __future__ import annotations

import os

try:
    import psutil
except ImportError:  # pragma: no cover - the SDK works without psutil on Linux
    psutil = None

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of a process (this one by default)."""
    pid = os.getpid() if pid is None else pid
    if psutil is not None:
        return psutil.Process(pid).memory_info().rss
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE
