"""Whatever a client sends, validation answers with a Batch or a 4xx BadBatch — nothing that
would become a 500."""

from __future__ import annotations

import copy
import json
import random
import time

import pytest

from perfdash.ingest.validate import BadBatch, Limits, decode_body, parse_batch

LIMITS = Limits(
    max_points=50, max_tags=16, max_name=128, max_body=100_000, max_future_s=600, max_age_s=90 * 86400
)
WEIRD = [
    None,
    True,
    False,
    0,
    -1,
    1e308,
    -1e308,
    10**30,
    1.5,
    "",
    "x" * 200,
    "a\x00b",
    "<script>",
    [],
    [1],
    {},
    {"a": {"b": []}},
    "2026-11-28T10:00:00Z",
    "2026-13-45T99:00:00Z",
    "NaN",
    "\ud800",
]


def weird(rnd: random.Random):
    return copy.deepcopy(rnd.choice(WEIRD))


def valid_body() -> dict:
    return {
        "batch_id": "b",
        "points": [
            {
                "ts": time.time(),
                "node": "n1",
                "agent": f"a{i}",
                "metric": "tool_execution_ms",
                "value": 10.0 + i,
                "tags": {"tool": "web"},
            }
            for i in range(5)
        ],
    }


def mutate(rnd: random.Random, obj, depth: int = 0):
    if isinstance(obj, dict) and obj and rnd.random() < 0.7:
        key = rnd.choice(list(obj))
        choice = rnd.random()
        if choice < 0.2:
            del obj[key]
        elif choice < 0.3:
            obj[rnd.choice(["extra", "tags", "ts", "points", "batch_id", "Metric"])] = weird(rnd)
        else:
            obj[key] = mutate(rnd, obj[key], depth + 1) if depth < 4 else weird(rnd)
        return obj
    if isinstance(obj, list) and obj and rnd.random() < 0.7:
        i = rnd.randrange(len(obj))
        if rnd.random() < 0.2:
            obj.append(weird(rnd))
        else:
            obj[i] = mutate(rnd, obj[i], depth + 1)
        return obj
    return weird(rnd)


def encode(rnd: random.Random, body) -> bytes:
    text = json.dumps(body, allow_nan=True)
    if rnd.random() < 0.2 and text:  # damage the text itself
        i = rnd.randrange(len(text))
        text = (
            text[:i]
            + rnd.choice(["", "{", "]", '"', "\\", "NaN", "Infinity", "1e999", "\x00"])
            + text[i + 1 :]
        )
    return text.encode("utf-8", "surrogatepass")


@pytest.mark.parametrize("seed", range(8))
def test_no_input_escapes_as_anything_but_a_4xx(seed):
    rnd = random.Random(seed)
    outcomes = {"ok": 0, "rejected": 0}
    for _ in range(400):
        body = valid_body()
        for _ in range(rnd.randint(1, 4)):
            body = mutate(rnd, body)
        raw = encode(rnd, body)
        try:
            parse_batch(decode_body(raw, "application/json", "", LIMITS), LIMITS, time.time())
            outcomes["ok"] += 1
        except BadBatch as exc:
            assert 400 <= exc.status < 500 and exc.message
            outcomes["rejected"] += 1
    assert outcomes["rejected"] > 100  # the fuzzer really produces bad input
