"""Agent processes on the node, found by pid files or a command-line pattern, and their
resident memory sampled as `agent_memory_bytes` (and their number as `active_agents`)."""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import psutil

from collectors.agent.forwarding import OncePerProblem, log
from collectors.client import Client
from collectors.protocol import ACTIVE_AGENTS, AGENT_MEMORY_BYTES


@dataclass(frozen=True)
class AgentProcess:
    agent: str
    process: psutil.Process


def find_agents(
    pid_dir: Path | None, pattern: re.Pattern[str] | None, problems: OncePerProblem
) -> list[AgentProcess]:
    """Live agent processes, one per pid; a pid file's name wins over a pattern's guess."""
    found: dict[int, AgentProcess] = {}
    if pattern is not None:
        for proc in psutil.process_iter(["name", "cmdline", "status"]):
            info = proc.info
            text = f"{info['name'] or ''} {' '.join(info['cmdline'] or ())}"
            if info["status"] != psutil.STATUS_ZOMBIE and pattern.search(text):
                found[proc.pid] = AgentProcess(f"{info['name']}-{proc.pid}", proc)
    if pid_dir is not None:
        for path in sorted(pid_dir.glob("*.pid")):
            proc = from_pid_file(path, problems)
            if proc is not None:
                found[proc.pid] = AgentProcess(path.stem, proc)
    found.pop(os.getpid(), None)  # a pattern like "agent" also matches this process
    return list(found.values())


def from_pid_file(path: Path, problems: OncePerProblem) -> psutil.Process | None:
    try:
        text = path.read_text().strip()
        written = path.stat().st_mtime
    except OSError:  # removed since it was listed
        return None
    if not text.isdigit():
        problems.warn(f"pid file {path} does not hold a pid", repr(text[:50]))
        return None
    try:
        proc = psutil.Process(int(text))
        # A pid file left behind by a dead agent may name a pid the system has reused: a
        # process started after the file was written is not the agent that wrote it.
        stale = proc.create_time() > written + 1 or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:  # no such process: the agent is gone
        return None
    return None if stale else proc


def sample_agents(client: Client, agents: list[AgentProcess]) -> None:
    live = 0
    for a in agents:
        try:
            rss = a.process.memory_info().rss
        except psutil.Error:  # it exited since it was found
            continue
        client.record(AGENT_MEMORY_BYTES, rss, agent=a.agent)
        live += 1
    client.record(ACTIVE_AGENTS, live)


def sample_forever(
    client: Client, pid_dir: Path | None, pattern: re.Pattern[str] | None, every: float, stop: threading.Event
) -> None:
    problems = OncePerProblem()
    while True:
        try:
            sample_agents(client, find_agents(pid_dir, pattern, problems))
        except Exception:  # e.g. an unreadable pid dir; the next round may do better
            log.exception("process sampling failed")
        if stop.wait(every):
            return
