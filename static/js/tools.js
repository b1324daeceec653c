// Tools and models: percentiles per tool, model and provider; click a header to sort.
"use strict";

(() => {
  const sortState = {};

  function trend(change) {
    if (change === null || change === undefined) return "–";
    const arrow = change > 0.05 ? "▲" : change < -0.05 ? "▼" : "▶";
    return `${arrow} ${(100 * change).toFixed(1)} %`;
  }

  const COLUMNS = [["name", "name"], ["count", "calls"], ["p50", "p50"], ["p90", "p90"], ["p95", "p95"],
                   ["p99", "p99"], ["p95_change", "p95 trend"], ["compare", "against the window before"]];
  // Each table's metric and tag, for its rows' links to the compare page.
  const COMPARED = { tools: ["tool_execution_ms", "tool"], models: ["llm_call_ms", "model"],
                     providers: ["llm_call_ms", "provider"] };

  // The most called ones, sortable, then one row that merges all the others (always last).
  function table(id, rows, drill) {
    const key = sortState[id] || "p95";
    const named = rows.filter((r) => r.others === undefined);
    const sorted = named.sort((a, b) => (key === "name" ? String(a.name).localeCompare(b.name) : (b[key] ?? -1) - (a[key] ?? -1)))
      .concat(rows.filter((r) => r.others !== undefined));
    const columns = COLUMNS.filter(([k]) => k === "compare" || k in (rows[0] || { name: 1, count: 1, p50: 1, p95: 1, p99: 1 }));
    const el = document.getElementById(id);
    PD.cells(el, columns.map(([, label]) => label), sorted, (r) => columns.map(([k]) => {
      if (k === "name" && r.others !== undefined) return `others (${r.others} ${id})`;
      if (k === "name") return drill ? PD.link(`/?${drill}=${encodeURIComponent(r.name)}`, r.name) : r.name;
      if (k === "count") return r.count;
      if (k === "p95_change") return trend(r[k]);
      if (k === "compare") {
        if (r.others !== undefined) return "";
        const [metric, tag] = COMPARED[id];
        return PD.link(PD.compareWindows({ metric, [`tag.${tag}`]: r.name }), "compare");
      }
      return PD.ms(r[k]);
    }));
    el.tHead.querySelectorAll("th").forEach((th, i) => {
      th.onclick = () => { sortState[id] = columns[i][0]; table(id, rows, drill); };
      th.title = "sort";
    });
  }

  function render(data) {
    table("tools", data.tools, "tool");
    table("models", data.models, "model");
    table("providers", data.providers, null);
    document.body.dataset.rendered = String(Date.now());
  }

  PD.start("tools", render);
})();
