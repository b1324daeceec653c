"""The compare page's choices: the metrics there are, and the values each dimension tag has
for the chosen one. The comparison itself is the read API's (GET /api/v1/compare), which the
page calls with its own URL's parameters, so a page's URL is the comparison it shows."""

from __future__ import annotations

from urllib.parse import urlencode

from django.urls import reverse

from perfdash.compare.params import DEFAULT_WINDOW
from perfdash.metrics import keys
from perfdash.metrics.cardinality import MetricSeries
from perfdash.metrics.dimensions import dimension_tags
from perfdash.metrics.models import WELL_KNOWN_METRICS
from perfdash.metrics.scope import FLEET, QueryError, check_text

DEFAULT_METRIC = "agent_response_ms"
# Values offered per tag; the field takes any value typed.
VALUES_OFFERED = 200


def choices(metric: str) -> dict:
    try:
        check_text("metric", metric)
    except QueryError:
        metric = DEFAULT_METRIC
    return {
        "metric": metric,
        "metrics": seen_metrics(),
        "tags": {tag: _values(metric, tag) for tag in dimension_tags()},
        "default_window": DEFAULT_WINDOW,
    }


def seen_metrics() -> list[str]:
    """Every metric stored, and the well-known ones (which may not have arrived yet)."""
    return sorted({*WELL_KNOWN_METRICS, *MetricSeries.objects.values_list("metric", flat=True)})


def against_its_node(agent: str, node: str, window: str) -> str | None:
    """The compare page for an agent against the other agents of its node (the node it ran
    most series on, if the page names none), or None if it has no node."""
    node = node or next(iter(keys.nodes_of(agent)), "")
    if not node:
        return None
    params = {
        "metric": DEFAULT_METRIC,
        "window": window,
        "a.node": node,
        "a.except_agent": agent,
        "b.agent": agent,
    }
    return f"{reverse('compare')}?{urlencode(params)}"


def _values(metric: str, tag: str) -> list[str]:
    return sorted({name for _, name in keys.members(metric, tag, FLEET)})[:VALUES_OFFERED]
