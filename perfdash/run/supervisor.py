"""Keeps named child processes running: one that dies is started again after a pause that
doubles with each quick death, and the others are left alone."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 30.0
# A child that stayed up this long is healthy again: its next death waits FIRST_DELAY_S.
STEADY_S = 60.0
POLL_S = 0.5
STOP_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Program:
    name: str
    command: list[str]
    # The command line for later starts, where it differs from the first one.
    restart_command: list[str] | None = None


@dataclass
class Child:
    program: Program
    process: subprocess.Popen
    started_at: float
    deaths_in_a_row: int = 0
    restart_at: float | None = None


def restart_delay(deaths_in_a_row: int) -> float:
    """The pause before starting a child again after its n-th quick death (from 1)."""
    return min(MAX_DELAY_S, FIRST_DELAY_S * 2 ** (deaths_in_a_row - 1))


def describe_exit(returncode: int) -> str:
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        return f"was killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"was killed by signal {-returncode}"


class Supervisor:
    def __init__(self, cwd: Path, env: Mapping[str, str], clock: Callable[[], float] = time.monotonic):
        self.cwd = cwd
        self.env = dict(env)
        self.clock = clock
        self.children: dict[str, Child] = {}
        self.stopping = False

    def start(self, program: Program) -> subprocess.Popen:
        """Starts the program and keeps it running until shutdown()."""
        process = self._spawn(program.command)
        self.children[program.name] = Child(program, process, self.clock())
        return process

    def process(self, name: str) -> subprocess.Popen:
        return self.children[name].process

    def check(self) -> None:
        """One look at every child: a dead one is given its restart time, one whose time has
        come is started again."""
        if self.stopping:
            return
        now = self.clock()
        for child in self.children.values():
            if child.restart_at is None and child.process.poll() is not None:
                self._schedule_restart(child, now)
            elif child.restart_at is not None and now >= child.restart_at:
                self._restart(child, now)

    def run(self, sleep: Callable[[float], None] = time.sleep) -> None:
        while not self.stopping:
            self.check()
            sleep(POLL_S)

    def stop(self, *_signal_args: object) -> None:
        """Ends run(); safe to call from a signal handler."""
        self.stopping = True

    def stop_on_signals(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.stop)

    def shutdown(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM to every child, then SIGKILL to any still running after timeout_s."""
        self.stopping = True
        processes = [child.process for child in self.children.values()]
        for process in processes:
            if process.poll() is None:
                process.terminate()
        # Real time, not self.clock: Popen.wait measures its timeout in real time.
        deadline = time.monotonic() + timeout_s
        for process in processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _spawn(self, command: list[str]) -> subprocess.Popen:
        return subprocess.Popen(command, cwd=self.cwd, env=self.env)

    def _schedule_restart(self, child: Child, now: float) -> None:
        up_s = now - child.started_at
        child.deaths_in_a_row = 1 if up_s >= STEADY_S else child.deaths_in_a_row + 1
        delay = restart_delay(child.deaths_in_a_row)
        child.restart_at = now + delay
        print(
            f"perfdash: {child.program.name} (pid {child.process.pid}) "
            f"{describe_exit(child.process.returncode)} after {up_s:.0f} s; "
            f"starting it again in {delay:.0f} s",
            file=sys.stderr,
            flush=True,
        )

    def _restart(self, child: Child, now: float) -> None:
        child.process = self._spawn(child.program.restart_command or child.program.command)
        child.started_at = now
        child.restart_at = None
