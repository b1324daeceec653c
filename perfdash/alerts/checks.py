"""The system checks of the deploy verification's settings (DEPLOY_VERIFY_AFTER,
DEPLOY_VERIFY_METRICS): a bad value would otherwise surface only in the worker's log."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register

from collectors.protocol import ProtocolError, check_name
from perfdash.lib.durations import HOUR_S, parse_duration

# A comparison needs ten minutes with points in each cohort; over 12 h it reads hour rows,
# which would blur the range before a deploy into the range after it.
AFTER_RANGE_S = (600, 12 * HOUR_S)


def problems() -> list[tuple[str, str]]:
    """(setting, what is wrong with it) of the deploy verification's settings."""
    found = []
    try:
        after = parse_duration(str(settings.DEPLOY_VERIFY_AFTER))
    except ValueError as exc:
        found.append(("DEPLOY_VERIFY_AFTER", str(exc)))
    else:
        if not AFTER_RANGE_S[0] <= after <= AFTER_RANGE_S[1]:
            found.append(("DEPLOY_VERIFY_AFTER", f"{settings.DEPLOY_VERIFY_AFTER} is not from 10m to 12h"))
    metrics = settings.DEPLOY_VERIFY_METRICS
    if not metrics:
        found.append(("DEPLOY_VERIFY_METRICS", "it names no metric"))
    for metric in metrics:
        try:
            check_name(metric, "metric", settings.INGEST_MAX_NAME_LENGTH)
        except ProtocolError as exc:
            found.append(("DEPLOY_VERIFY_METRICS", exc.message))
    return found


@register("alerts")
def deploy_verification_settings(app_configs=None, **kwargs) -> list:
    ids = {"DEPLOY_VERIFY_AFTER": "alerts.E001", "DEPLOY_VERIFY_METRICS": "alerts.E002"}
    hints = {
        "DEPLOY_VERIFY_AFTER": "Set DEPLOY_VERIFY_AFTER to a duration from 10m to 12h, e.g. 30m.",
        "DEPLOY_VERIFY_METRICS": "Set DEPLOY_VERIFY_METRICS to metric names, comma-separated, e.g. "
        "agent_response_ms,tool_execution_ms,llm_call_ms,memory_op_ms.",
    }
    return [Error(f"{name}: {problem}.", hint=hints[name], id=ids[name]) for name, problem in problems()]
