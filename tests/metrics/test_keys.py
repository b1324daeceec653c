"""The per-process rollup-key index sees every key committed before a read."""

from __future__ import annotations

import time

import numpy as np
import psycopg
import pytest
from django.db import connection

from perfdash.api.models import ApiToken
from perfdash.ingest.models import IngestedBatch
from perfdash.metrics import keys, query
from perfdash.metrics.batch import Batch
from perfdash.metrics.scope import Scope

NOW = time.time()


def store(token_id: int, batch_id: str, agents: list[str], node: str = "node-1") -> None:
    series = [("agent_memory_bytes", node, a, "{}") for a in agents]
    idx = np.arange(len(agents), dtype=np.int32)
    IngestedBatch.store(
        token_id,
        Batch(batch_id, series, idx, np.full(len(agents), NOW - 5), np.full(len(agents), 1e6)),
        now=NOW,
    )


def agents() -> set[str]:
    return set(query.breakdown("agent_memory_bytes", 300, "agent", now=NOW, percentiles=False))


@pytest.mark.django_db(transaction=True)
def test_a_new_agent_shows_up_in_a_breakdown_read_after_it_is_stored():
    token = ApiToken.issue("k", ["ingest"])[0]
    store(token.id, "b1", ["agent-1"])
    assert agents() == {"agent-1"}
    store(token.id, "b2", ["agent-2"])  # a new key: the cached index must not hide it
    assert agents() == {"agent-1", "agent-2"}


def writer() -> psycopg.Connection:
    s = connection.settings_dict
    return psycopg.connect(dbname=s["NAME"], user=s["USER"], host=s["HOST"], port=s["PORT"])


def add_key(conn: psycopg.Connection, agent: str) -> None:
    """What store._create does: number the transaction's keys, then add them."""
    version = conn.execute(keys.NEXT_VERSION).fetchone()[0]
    conn.execute(
        "INSERT INTO metrics_rollupkey (metric, node, agent, tag_key, tag_value, version) "
        "VALUES (%s, '', %s, '', '', %s)",
        ["custom_metric", agent, version],
    )


def names() -> set[str]:
    return {name for _, name in keys.members("custom_metric", "agent", query.FLEET)}


@pytest.mark.django_db(transaction=True)
def test_key_creators_number_their_keys_in_commit_order():
    with writer() as first, writer() as second:
        add_key(first, "agent-1")
        second.execute("SET lock_timeout = '100ms'")
        # The second cannot take a number while the first has not committed: were it to,
        # a reader could load its higher number first and then never look below it.
        with pytest.raises(psycopg.errors.LockNotAvailable):
            add_key(second, "agent-2")
        second.rollback()
        assert names() == set()
        first.commit()
        assert names() == {"agent-1"}
        add_key(second, "agent-2")
        second.commit()
        assert names() == {"agent-1", "agent-2"}


@pytest.mark.django_db(transaction=True)
def test_reads_within_pinned_share_one_look_for_new_keys(django_assert_num_queries):
    token = ApiToken.issue("k", ["ingest"])[0]
    store(token.id, "b1", ["agent-1"])
    with keys.pinned():
        store(token.id, "b2", ["agent-2"], node="node-2")
        with django_assert_num_queries(0):  # lookups of the keys the index holds ask PostgreSQL nothing
            for _ in range(3):
                keys.members("agent_memory_bytes", "node", query.FLEET)
                keys.every_metric(query.FLEET)
        assert agents() == {"agent-1"}  # as when it began, also for the keys read from PostgreSQL
    assert agents() == {"agent-1", "agent-2"}


@pytest.mark.django_db
def test_keys_from_before_the_counter_are_found():
    with connection.cursor() as cur:  # as migration 0003 leaves a store: version 0, no counter row
        cur.execute("DELETE FROM metrics_keyversion")
        cur.execute(
            "INSERT INTO metrics_rollupkey (metric, node, agent, tag_key, tag_value, version) "
            "VALUES ('custom_metric', '', 'old-agent', '', '', 0)"
        )
    keys.forget()
    assert names() == {"old-agent"}


@pytest.mark.django_db(transaction=True)
def test_a_counter_moved_on_without_new_keys_is_looked_at_alone():
    """A worker that finds its keys made meanwhile by another still takes a number: the index
    must remember the counter, or every lookup from then on would search the key table."""
    from django.test.utils import CaptureQueriesContext

    keys.ids("custom_metric", query.FLEET)
    with writer() as conn:
        conn.execute(keys.NEXT_VERSION)  # a number, and no key with it
    keys.ids("custom_metric", query.FLEET)  # catches up with the counter
    with CaptureQueriesContext(connection) as queries:
        assert keys.ids("custom_metric", query.FLEET) == []
    assert [q["sql"] for q in queries] == [keys._COUNTER]


@pytest.mark.django_db(transaction=True)
def test_a_process_holds_the_keys_of_a_bounded_number_of_agents(monkeypatch, django_assert_num_queries):
    monkeypatch.setattr(keys, "AGENTS_KEPT", 2)
    token = ApiToken.issue("k", ["ingest"])[0]
    store(token.id, "b1", [f"agent-{i}" for i in range(5)])
    for i in range(5):
        assert len(keys.ids("agent_memory_bytes", Scope(agent=f"agent-{i}"))) == 1
    assert len(keys._current().agents.kept) == 2
    assert all(not k.agent for ks in keys._current().groups.values() for k in ks)
    with django_assert_num_queries(1):  # the counter: agent-4's keys are held
        keys.ids("agent_memory_bytes", Scope(agent="agent-4"))
    with django_assert_num_queries(2):  # the counter, and agent-0's keys again
        keys.ids("agent_memory_bytes", Scope(agent="agent-0"))

    store(token.id, "b2", ["agent-4"], node="node-2")  # it moved: a key of its own there
    with django_assert_num_queries(2):  # the counter and the new keys, which the held agent gets
        assert len(keys.ids("agent_memory_bytes", Scope(agent="agent-4"))) == 2
    assert keys.every_metric(Scope(agent="agent-4", node="node-2")) == keys.ids(
        "agent_memory_bytes", Scope(agent="agent-4", node="node-2")
    )
