"""`make run` refuses to start, in one line naming the URL it tried, when a service is away."""

from __future__ import annotations

from perfdash.run import check_services

DB = "postgres://postgres@127.0.0.1:5432/test_perfdash"
REDIS = "redis://127.0.0.1:6379/15"


def test_it_names_the_postgres_url_it_could_not_reach():
    problem = check_services("postgres://postgres:secret@127.0.0.1:1/perfdash", REDIS)
    assert problem and "\n" not in problem
    assert "postgres://postgres:***@127.0.0.1:1/perfdash" in problem and "secret" not in problem
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
