"""The node collector agent: one long-running process per node that forwards what the agents
on the node report, merged into large batches, through one `Client` to perfdash:

- StatsD / DogStatsD datagrams over UDP (`statsd` maps them to points, `udp` listens);
- ingest API v1 bodies POSTed without a token to a local HTTP endpoint (`local_ingest`), so an
  agent in any language (or the SDK, pointed at it) needs neither a token nor a route to the
  server;
- the resident memory of agent processes found by pid files or a command-line pattern
  (`processes`).

    python -m collectors agent --url http://perfdash:8000 --token pd_… --pid-dir /run/agents

Every point is checked against the protocol (`collectors.protocol`, the server's own rules)
before it joins a batch (`forwarding`): the server rejects a whole batch for one bad point,
and a merged batch holds the points of many agents. `cli` holds the options and the process.
"""

from __future__ import annotations

from collectors.agent.cli import main

__all__ = ["main"]
