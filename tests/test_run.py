"""`make run`: it refuses to start, in one line naming what it tried, when a service or a
port is away; once running, a child that dies is started again and the rest keep running."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from collectors.simulate.cli import parse_args
from perfdash.lib.secrets import MASK
from perfdash.run import ROOT, Config, Demo, check_ports, check_services, demo_fleet
from perfdash.run.supervisor import MAX_DELAY_S, STEADY_S, Program, Supervisor

DB = "postgres://postgres@127.0.0.1:5432/test_perfdash"
REDIS = "redis://127.0.0.1:6379/15"
SLEEP = [sys.executable, "-c", "import time; time.sleep(100)"]


def test_it_names_the_postgres_url_it_could_not_reach():
    problem = check_services("postgres://postgres:secret@127.0.0.1:1/perfdash", REDIS)
    assert problem and "\n" not in problem
    assert f"postgres://postgres:{MASK}@127.0.0.1:1/perfdash" in problem and "secret" not in problem
    assert "DATABASE_URL" in problem


def test_it_names_the_redis_url_it_could_not_reach(db):
    problem = check_services(DB, "redis://127.0.0.1:1/0")
    assert problem and "\n" not in problem and "redis://127.0.0.1:1/0" in problem and "REDIS_URL" in problem


def test_it_is_happy_when_both_answer(db):
    assert check_services(DB, REDIS) is None


def test_it_creates_a_missing_database():
    import psycopg

    name = "perfdash_run_check_tmp"
    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        assert check_services(f"postgres://postgres@127.0.0.1:5432/{name}", REDIS) is None
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        conn.execute(f"DROP DATABASE {name}")


def test_it_names_a_port_another_program_listens_on():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        problem = check_ports({"PORT": port - 1 if port > 1024 else port + 1, "INGEST_PORT": port})
    assert problem and "\n" not in problem and str(port) in problem and "INGEST_PORT" in problem


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def supervisor(clock: Clock) -> Iterator[Supervisor]:
    supervisor = Supervisor(ROOT, os.environ, clock=clock)
    yield supervisor
    supervisor.shutdown()


def kill(supervisor: Supervisor, name: str) -> int:
    process = supervisor.process(name)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return process.pid


def running_pids(supervisor: Supervisor) -> dict[str, int]:
    return {
        name: child.process.pid for name, child in supervisor.children.items() if child.process.poll() is None
    }


def test_a_killed_child_is_started_again_while_the_others_keep_running(supervisor, clock, capsys):
    for name in ("web", "ingest", "worker", "beat"):
        supervisor.start(Program(name, SLEEP))
    before = running_pids(supervisor)
    clock.now += 5

    killed = kill(supervisor, "worker")
    supervisor.check()
    clock.now += 1
    supervisor.check()

    after = running_pids(supervisor)
    assert after.keys() == before.keys()
    assert after["worker"] != killed
    assert {n: p for n, p in after.items() if n != "worker"} == {
        n: p for n, p in before.items() if n != "worker"
    }
    assert capsys.readouterr().err.splitlines() == [
        f"perfdash: worker (pid {killed}) was killed by SIGKILL after 5 s; starting it again in 1 s"
    ]


def test_it_waits_twice_as_long_after_each_quick_death_up_to_a_cap(supervisor, clock, capsys):
    supervisor.start(Program("worker", SLEEP))
    waits = []
    for _ in range(7):
        killed = kill(supervisor, "worker")
        supervisor.check()
        died_at = clock.now
        while supervisor.process("worker").pid == killed and clock.now < died_at + 2 * MAX_DELAY_S:
            clock.now += 0.5
            supervisor.check()
        waits.append(clock.now - died_at)
        clock.now += 1  # up for a second: a quick death again
    assert waits == [1, 2, 4, 8, 16, MAX_DELAY_S, MAX_DELAY_S]
    assert len(capsys.readouterr().err.splitlines()) == 7


def test_a_child_that_stayed_up_a_while_is_restarted_after_the_first_pause_again(supervisor, clock):
    supervisor.start(Program("worker", SLEEP))
    for _ in range(3):  # quick deaths: the next pause would be 8 s
        kill(supervisor, "worker")
        supervisor.check()
        clock.now += 10
        supervisor.check()
    clock.now += STEADY_S
    killed = kill(supervisor, "worker")
    supervisor.check()
    clock.now += 1
    supervisor.check()
    assert supervisor.process("worker").pid != killed
    assert supervisor.process("worker").poll() is None


def test_a_restart_runs_the_restart_command(supervisor, clock):
    again = [*SLEEP, "again"]
    supervisor.start(Program("demo fleet", SLEEP, restart_command=again))
    kill(supervisor, "demo fleet")
    supervisor.check()
    clock.now += 1
    supervisor.check()
    assert supervisor.process("demo fleet").args == again


def test_a_restarted_demo_fleet_does_not_backfill_again():
    config = Config(DB, REDIS, 8000, 8001, 3, demo=True, demo_agents=20, demo_nodes=2)
    fleet = demo_fleet(config, Demo(token="t", first_start=True, login="admin"))
    assert "--backfill" in fleet.command
    assert fleet.restart_command and "--backfill" not in fleet.restart_command


def test_the_demo_fleet_runs_a_release_with_two_variants_one_slower():
    config = Config(DB, REDIS, 8000, 8001, 3, demo=True, demo_agents=20, demo_nodes=2)
    fleet = demo_fleet(config, Demo(token="t", first_start=False, login="admin"))
    simulate = fleet.command.index("simulate")
    args = parse_args([*fleet.command[simulate + 1 :], "--token", "t"])
    assert (args.version, args.variants) == ("1.3.0", ("a", "b"))
    assert args.slowdown == {"b": 1.15, "1.3.0": 1.12, "agent-7": 2.0}
    assert args.leak == ("agent-3", 300)  # a young leak for the growth outliers


def test_the_demo_fleets_history_runs_the_release_before_so_its_deploy_has_a_slowdown():
    config = Config(DB, REDIS, 8000, 8001, 3, demo=True, demo_agents=20, demo_nodes=2)
    fleet = demo_fleet(config, Demo(token="t", first_start=True, login="admin"))
    simulate = fleet.command.index("simulate")
    args = parse_args([*fleet.command[simulate + 1 :], "--token", "t"])
    assert (args.previous_version, args.version, args.deploy_event) == ("1.2.0", "1.3.0", "1.3.0")
    assert args.deployed_ago == 3600 < args.backfill
    assert "--previous-version" not in fleet.restart_command


def test_nothing_is_restarted_once_stopping(supervisor, clock, capsys):
    supervisor.start(Program("worker", SLEEP))
    supervisor.stop()
    killed = kill(supervisor, "worker")
    clock.now += 60
    supervisor.check()
    assert supervisor.process("worker").pid == killed
    assert capsys.readouterr().err == ""


SUPERVISED = f"""
import sys
from perfdash.run.supervisor import Program, Supervisor

supervisor = Supervisor({str(ROOT)!r}, {{}})
supervisor.stop_on_signals()
try:
    for name in ("web", "worker"):
        supervisor.start(Program(name, {SLEEP!r}))
    print(*(supervisor.process(name).pid for name in ("web", "worker")), flush=True)
    supervisor.run()
finally:
    supervisor.shutdown()
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_every_child_and_the_supervisor(sig):
    process = subprocess.Popen(
        [sys.executable, "-c", SUPERVISED], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        pids = [int(pid) for pid in process.stdout.readline().split()]
        assert len(pids) == 2
        process.send_signal(sig)
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_only_the_first_start_of_the_demo_fleet_marks_a_deploy_and_a_restart_does_not():
    config = Config(DB, REDIS, 8000, 8001, 3, demo=True, demo_agents=20, demo_nodes=2)
    first = demo_fleet(config, Demo(token="t", first_start=True, login="admin"))
    assert first.command[-2:] == ["--deploy-event", "1.3.0"]
    assert "--deploy-event" not in first.restart_command
    later = demo_fleet(config, Demo(token="t", first_start=False, login="admin"))
    assert "--deploy-event" not in later.command
