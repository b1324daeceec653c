"""The package layering holds: every package imports only packages below it.

Read from the source (every import statement, including those inside functions), so a
backwards import fails here before it becomes an import cycle.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Bottom first. The project's top-level modules (settings, urls, asgi, celery, beat, run)
# wire everything together and may import any of these.
LAYERS = [
    "lib",
    "metrics",
    "live",
    "health",
    "ingest",
    "otlp",
    "events",
    "forecasting",
    "compare",
    "detect",
    "alerts",
    "api",
    "dashboard",
]
TOP_LEVEL = {"settings", "urls", "asgi", "celery", "beat", "run", "__init__"}


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def sources(package: str) -> list[Path]:
    return [p for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts]


def package_edges() -> dict[str, set[tuple[str, str]]]:
    """{importing package: {(imported package, file)}} for perfdash's sub-packages."""
    edges: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for path in sources("perfdash"):
        rel = path.relative_to(ROOT / "perfdash")
        src = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        for name in imports_of(path):
            parts = name.split(".")
            if parts[0] == "perfdash" and len(parts) > 1 and parts[1] != src:
                edges[src].add((parts[1], str(rel)))
    return edges


def test_every_package_imports_only_packages_below_it():
    backwards = []
    for src, targets in package_edges().items():
        if src in TOP_LEVEL:
            continue
        assert src in LAYERS, f"perfdash/{src} is not placed in LAYERS"
        for dst, path in targets:
            if dst in TOP_LEVEL or LAYERS.index(dst) >= LAYERS.index(src):
                backwards.append(f"{path} imports perfdash.{dst}")
    assert backwards == []


def test_modules_of_a_package_do_not_import_each_other_in_a_cycle():
    graph: dict[str, set[str]] = defaultdict(set)
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts): p for p in sources("perfdash")}
    for name, path in modules.items():
        for imported in imports_of(path):
            if imported in modules and imported != name:
                graph[name].add(imported)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph[start]:
            if nxt == goal or (nxt not in seen and (seen.add(nxt) or reaches(nxt, goal, seen))):
                return True
        return False

    cycles = sorted(m for m in modules if reaches(m, m, set()))
    assert cycles == []


def test_the_collectors_import_neither_django_nor_perfdash():
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sources("collectors")
        for name in imports_of(path)
        if name.split(".")[0] in {"django", "perfdash", "channels", "celery"}
    ]
    assert offenders == []
