"""The boards perfdash starts with. The data is frozen here (a migration must not change with
the code); load them again with `Board.load(boards.parse(SEEDED))` or import_boards."""

from __future__ import annotations

from django.db import migrations

BEAM_HINT = (
    "No data in this window: an Elixir app fills this board when it adds the "
    "telemetry_metrics_statsd reporter with the VM's last_value metrics (vm.memory.*, "
    "vm.total_run_queue_lengths.*, vm.system_counts.*) to its telemetry supervisor, sending to "
    "the node collector's StatsD port (docs/boards.md)."
)


def _gauge(title: str, metric: str, units: str) -> dict:
    return {"title": title, "query": f"metric={metric}&stat=max&group=node&window=1h", "units": units}


SEEDED = {
    "format": 1,
    "boards": [
        {
            "name": "LLM providers and cache",
            "slug": "llm",
            "position": 10,
            "description": "Tokens, the prompt cache, errors and LLM latency, by model, provider and tool.",
            "empty_hint": (
                "No data in this window: agents fill this board with the SDK's LLM calls "
                "(llm_call_ms, tokens_total, cache hits and misses, errors_total) or through OpenTelemetry."
            ),
            "panels": [
                {
                    "title": "Tokens per second by model",
                    "query": "metric=tokens_total&stat=rate&group=model&window=1h",
                    "chart": "area",
                    "units": "tokens/s",
                },
                {
                    "title": "Tokens per second by provider",
                    "query": "metric=tokens_total&stat=rate&group=provider&window=1h",
                    "chart": "area",
                    "units": "tokens/s",
                },
                {"title": "Cache hit rate", "query": "ratio=hit_rate&window=1h", "units": "hit rate"},
                {
                    "title": "Cache hits per second by tool",
                    "query": "metric=cache_hits_total&stat=rate&group=tool&window=1h",
                    "units": "hits/s",
                },
                {
                    "title": "Cache misses per second by tool",
                    "query": "metric=cache_misses_total&stat=rate&group=tool&window=1h",
                    "units": "misses/s",
                },
                {
                    "title": "Cache hits per second by model",
                    "query": "metric=cache_hits_total&stat=rate&group=model&window=1h",
                    "units": "hits/s",
                },
                {
                    "title": "Errors per second by error type",
                    "query": "metric=errors_total&stat=rate&group=error&window=1h",
                    "chart": "bar",
                    "units": "errors/s",
                },
                {
                    "title": "LLM call p95 by provider",
                    "query": "metric=llm_call_ms&stat=p95&group=provider&window=1h",
                    "units": "ms",
                },
                {
                    "title": "LLM time to first token",
                    "query": "metric=llm_time_to_first_token_ms&stat=p50&stat=p95&window=1h",
                    "units": "ms",
                },
            ],
        },
        {
            "name": "BEAM runtime",
            "slug": "beam",
            "position": 20,
            "description": (
                "The Erlang VM's memory, run queues and counts per node, as telemetry_poller "
                "measures them and telemetry_metrics_statsd sends them to the node collector."
            ),
            "empty_hint": BEAM_HINT,
            "panels": [
                _gauge("VM memory: total", "vm_memory_total", "bytes"),
                _gauge("VM memory: processes", "vm_memory_processes", "bytes"),
                _gauge("VM memory: binaries", "vm_memory_binary", "bytes"),
                _gauge("VM memory: ETS", "vm_memory_ets", "bytes"),
                _gauge("Run queue length: total", "vm_total_run_queue_lengths_total", "tasks"),
                _gauge("Run queue length: CPU schedulers", "vm_total_run_queue_lengths_cpu", "tasks"),
                _gauge("Run queue length: IO schedulers", "vm_total_run_queue_lengths_io", "tasks"),
                _gauge("Processes", "vm_system_counts_process_count", "processes"),
                _gauge("Atoms", "vm_system_counts_atom_count", "atoms"),
                _gauge("Ports", "vm_system_counts_port_count", "ports"),
            ],
        },
    ],
}


def seed(apps, schema_editor) -> None:
    Board = apps.get_model("dashboard", "Board")
    Panel = apps.get_model("dashboard", "Panel")
    for spec in SEEDED["boards"]:
        fields = {k: spec.get(k, "") for k in ("name", "description", "empty_hint")}
        board, _ = Board.objects.update_or_create(
            slug=spec["slug"], defaults={**fields, "position": spec["position"]}
        )
        board.panels.all().delete()
        for i, p in enumerate(spec["panels"]):
            Panel.objects.create(
                board=board,
                position=i,
                title=p["title"],
                query=p["query"],
                chart=p.get("chart", "line"),
                units=p.get("units", ""),
                target=p.get("target"),
            )


def unseed(apps, schema_editor) -> None:
    apps.get_model("dashboard", "Board").objects.filter(slug__in=["llm", "beam"]).delete()


class Migration(migrations.Migration):
    dependencies = [("dashboard", "0001_boards")]
    operations = [migrations.RunPython(seed, unseed)]
