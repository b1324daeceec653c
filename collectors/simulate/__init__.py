"""The fleet simulator: realistic telemetry of a fleet of AI agents, for demos, tests and
benchmarks, sent through ingest API v1 like any collector.

    python -m collectors simulate --agents 200 --nodes 4 --backfill 14d --url … --token pd_…

The traffic model (UTC; the same --seed gives the same fleet, episodes and points):

- Requests. A live agent serves 0.25 requests/s on average (each agent a little busier or
  quieter than the next), following a daily cycle that peaks at 15:00 at 3x the 03:00 trough.
  A request makes one `agent_response_ms` (median ~900 ms), ~1.5 tool calls
  (`tool_execution_ms`, tag `tool`; timeouts at 30 s count in `errors_total`), ~1.5 LLM
  calls (`llm_call_ms` and `tokens_total`, tags `provider` and `model`, and `type` input or
  output on the tokens; failures count in
  `errors_total`), ~2 memory ops (`memory_op_ms`, tag `op`) and one cache lookup
  (`cache_hits_total` or `cache_misses_total`, tags `tool`, `model` and
  `provider`; calculator results hit 97 %, web searches 65 %). Counters are one point per event, as the
  SDK records them.
- Gauges, every tick (1 s live): `agent_memory_bytes` per live agent (tens of MB, slowly
  varying) and `active_agents` per node, reported by the node's collector (agent
  "collector").
- The fleet: agents sit on nodes in contiguous blocks. It grows 3 %/day, so going back in
  time agents drop out in a seeded random order (the full fleet is there from `full_at`,
  the start of the run, on); every agent also leaves once a UTC day for 2-20 minutes.
- Episodes, at most one per UTC slot of each kind: a slow tool (x5 for 20-60 min, slot
  6 h), a slow provider (x4 and 10x the failures for 15-45 min, slot 8 h) and a memory leak
  in one agent (+160 MB over 1-3 h, slot 12 h, then it restarts). `Fleet.episodes` lists them.
- Releases, for comparisons: --version tags every point `version`; --variants a,b splits the
  agents among the variants (agent i runs variant i mod their number, so each node runs
  every variant) and tags their points `variant`; --slowdown b=15% makes variant b's
  response, tool, LLM and memory-op latencies 15 % slower. Without these flags no point
  carries either tag, and the same seed gives the same points as ever.
- Backfill samples: one tick per `--backfill-step` (default 1 minute, coarser when that
  would exceed ~3 M points), about one request per agent per tick at average load, so every
  metric gets about one point per agent per tick; counter points carry the events they
  stand for, so sums of counters match live traffic while point rates are lower.

Sending: the backfill first, then live seconds as they pass, each node's points in batches
of at most --batch-size, by --senders threads with a connection each. A batch the server
cannot take now (429, 503, no connection) is resent, same body and batch id, after a backoff
that honours Retry-After; a rejected one (bad token, bad point) stops the run with the
server's message and exit status 1. Ctrl-C stops generating and sends what is queued (Ctrl-C
again gives up on it). Progress goes to stderr, the summary to stdout; --dry-run generates
and encodes the same batches as fast as it can and sends nothing.
"""

from __future__ import annotations

# The docstring above is also `--help`. The package: traffic.py (the fleet, its episodes and
# points; how a backfill is sampled), send.py (the sender threads, their counts and the
# progress line), cli.py (the options and the run). Batches are encoded as every collector's
# are (collectors.transport.encode_dicts).
from collectors.simulate.cli import main
from collectors.simulate.traffic import (
    DAY,
    HOUR,
    MAX_BATCH_POINTS,
    MINUTE,
    NODE_AGENT,
    REQUESTS_PER_S,
    Episode,
    Fleet,
    Window,
    backfill_step,
    backfill_windows,
)

__all__ = [
    "DAY",
    "HOUR",
    "MAX_BATCH_POINTS",
    "MINUTE",
    "NODE_AGENT",
    "REQUESTS_PER_S",
    "Episode",
    "Fleet",
    "Window",
    "backfill_step",
    "backfill_windows",
    "main",
]
