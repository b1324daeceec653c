// Fleet, node and agent pages: the same panels for a narrower scope.
"use strict";

(() => {
  const COLORS = { p50: "#2e86de", p95: "#e67e22", p99: "#8e44ad" };

  function kpis(k) {
    document.getElementById("kpi-active").textContent = k.active_agents;
    document.getElementById("kpi-rate").textContent = PD.fmt(k.points_per_s, 1);
    document.getElementById("kpi-errors").textContent = PD.fmt(k.errors_per_s, 3);
    document.getElementById("kpi-error-ratio").textContent =
      k.error_ratio === null ? "–" : `${(100 * k.error_ratio).toFixed(2)} %`;
  }

  // Tokens, cache and errors by type: counters' sums over the window.
  function llm(l) {
    document.getElementById("llm-tokens").textContent = PD.fmt(l.tokens_per_s, 1);
    const cache = l.cache_lookups ? `too few lookups (${PD.fmt(l.cache_lookups, 0)})` : "no cache data";
    document.getElementById("llm-cache").textContent =
      l.cache_hit_rate === null ? cache : `${(100 * l.cache_hit_rate).toFixed(1)} %`;
    const more = l.other_error_types ? ` (+${l.other_error_types} more types)` : "";
    document.getElementById("llm-errors").textContent = l.errors.length
      ? l.errors.map((e) => `${e.error} ${PD.fmt(e.per_s, 3)}`).join(" · ") + more : "none";
  }

  // The busiest nodes, then one bar for the others: the busiest of them.
  function nodes(rows) {
    const label = (r) => (r.others === undefined ? PD.esc(r.node) : `others (${r.others} nodes, highest)`);
    const el = PD.draw("chart-nodes", [
      { type: "bar", name: "active agents", x: rows.map(label), y: rows.map((r) => r.active_agents),
        customdata: rows.map((r) => (r.others === undefined ? r.node : null)),
        marker: { color: rows.map((r) => (r.others === undefined ? "#2e86de" : "#95a5a6")) } },
    ], Object.assign(PD.layout("Active agents per node (click a node to drill down)", "node", "agents"),
      PD.hline(rows.length ? rows[0].capacity : 1000, "capacity per node")));
    if (el && !el.dataset.bound) {
      el.dataset.bound = "1";
      el.on("plotly_click", (e) => {
        const node = e.points[0].customdata;
        if (node !== null) window.location = `/nodes/${encodeURIComponent(node)}/${window.location.search}`;
      });
    }
  }

  // A pair of panels per latency metric, in the order sent; one that starts being sent (the
  // time to first token) gets its pair where it belongs.
  function ensurePanels(latency) {
    const root = document.getElementById("latency");
    let after = null;
    for (const m of latency) {
      for (const kind of ["hist", "pct"]) {
        const id = `chart-${m.metric}-${kind}`;
        let panel = document.getElementById(id)?.parentElement;
        if (!panel) {
          panel = document.createElement("div");
          panel.className = "panel";
          const chart = document.createElement("div");
          chart.className = "chart";
          chart.id = id;
          panel.appendChild(chart);
          root.insertBefore(panel, after ? after.nextSibling : root.firstChild);
        }
        after = panel;
      }
    }
  }

  // The same query in the explorer: the page's window and node or agent.
  function explore(metric) {
    const page = new URLSearchParams(window.location.search);
    const p = new URLSearchParams([["metric", metric], ["stat", "p50"], ["stat", "p95"], ["stat", "p99"],
                                   ["window", page.get("window") || "1h"]]);
    const el = document.getElementById("page");
    for (const key of ["node", "agent"]) if (el.dataset[key]) p.set(key, el.dataset[key]);
    return `/explore/?${p}`;
  }

  function latencyPanels(latency) {
    ensurePanels(latency);
    for (const m of latency) {
      const link = (text) => `<a href="${PD.esc(explore(m.metric))}">${text}</a>`;
      const buckets = m.histogram.buckets;
      const x = buckets.length ? [...buckets.map((b) => b.lower), buckets[buckets.length - 1].upper] : [];
      const y = buckets.length ? [...buckets.map((b) => b.count), 0] : [];
      const s = m.stats;
      PD.draw(`chart-${m.metric}-hist`, [
        { type: "scatter", mode: "lines", line: { shape: "hv", color: "#2e86de" }, fill: "tozeroy",
          name: `${m.metric} (n=${s.count})`, x, y },
      ], Object.assign(PD.layout(link(`${m.title}: distribution — p50 ${PD.ms(s.p50)}, p95 ${PD.ms(s.p95)}, p99 ${PD.ms(s.p99)}`),
        "latency (ms, log scale)", "points"), { xaxis: { type: "log", title: { text: "latency (ms, log scale)" } } },
        m.target ? { shapes: [{ type: "line", yref: "paper", y0: 0, y1: 1, x0: m.target.value, x1: m.target.value,
          line: { color: "#c0392b", dash: "dash", width: 2 } }],
          annotations: [{ yref: "paper", y: 1, x: Math.log10(m.target.value), text: `target ${m.target.stat} ${PD.ms(m.target.value)}`,
            showarrow: false, yanchor: "bottom", font: { color: "#c0392b" } }] } : {}));
      const t = PD.dates(m.series.t);
      const traces = ["p50", "p95", "p99"].map((p) => ({
        type: "scatter", mode: "lines+markers", name: p, x: t, y: m.series[p], connectgaps: false,
        line: { color: COLORS[p] }, marker: { size: 4 } }));
      // The p95's usual band for the time of day (hourly p95s of the last 28 days, ±4 MADs),
      // under the lines; absent until a week of history.
      if (m.band) {
        traces.unshift(
          { type: "scatter", mode: "lines", x: t, y: m.band.lo, line: { width: 0 }, hoverinfo: "skip",
            showlegend: false, connectgaps: false },
          { type: "scatter", mode: "lines", x: t, y: m.band.hi, line: { width: 0 }, fill: "tonexty",
            fillcolor: "rgba(230,126,34,0.15)", name: "usual hourly p95 (±4 MADs)", hoverinfo: "skip",
            connectgaps: false });
      }
      PD.draw(`chart-${m.metric}-pct`, traces, Object.assign(
        PD.layout(link(`${m.title}: p50 / p95 / p99 over time`), "time", "latency (ms)"),
        m.target ? PD.hline(m.target.value, `target ${m.target.stat} ${PD.ms(m.target.value)}`) : {}));
    }
  }

  // The highest agents, then one bar for the others: the highest of them.
  function memory(mem, agentPage) {
    const top = mem.top;
    const title = mem.others.agents
      ? `Memory per agent: top ${top.length} of ${top.length + mem.others.agents} (others ≤ ${PD.fmt(mem.others.max_mb)} MB)`
      : "Memory per agent";
    const bars = top.map((r) => ({ label: PD.esc(r.agent), mb: r.mb, agent: r.agent }));
    if (mem.others.agents) bars.push({ label: `others (${mem.others.agents} agents)`, mb: mem.others.max_mb, agent: null });
    const color = (b) => (b.agent === null ? "#95a5a6" : b.mb > mem.target_mb ? "#c0392b" : "#27ae60");
    const el = PD.draw("chart-memory-top", [
      { type: "bar", orientation: "h", name: "resident memory (max, last 5 min)", y: bars.map((b) => b.label),
        x: bars.map((b) => b.mb), customdata: bars.map((b) => b.agent), marker: { color: bars.map(color) } },
    ], Object.assign(PD.layout(title, "memory (MB)", "agent"),
      { yaxis: { autorange: "reversed", automargin: true, title: { text: "agent" } },
        shapes: [{ type: "line", yref: "paper", y0: 0, y1: 1, x0: mem.target_mb, x1: mem.target_mb,
                   line: { color: "#c0392b", dash: "dash", width: 2 } }],
        annotations: [{ yref: "paper", y: 1, x: mem.target_mb, text: `target ${mem.target_mb} MB`, showarrow: false,
                        yanchor: "bottom", font: { color: "#c0392b" } }] }));
    if (el && !agentPage && !el.dataset.bound) {
      el.dataset.bound = "1";
      el.on("plotly_click", (e) => {
        const agent = e.points[0].customdata;
        if (agent !== null) window.location = `/agents/${encodeURIComponent(agent)}/${window.location.search}`;
      });
    }
    PD.draw("chart-memory-dist", [
      { type: "bar", name: `agents (n=${mem.distribution.agents})`, marker: { color: "#16a085" },
        x: mem.distribution.counts.map((_, i) => (mem.distribution.edges[i] + mem.distribution.edges[i + 1]) / 2),
        width: mem.distribution.counts.map((_, i) => mem.distribution.edges[i + 1] - mem.distribution.edges[i]),
        y: mem.distribution.counts },
    ], Object.assign(PD.layout("Memory distribution across agents", "memory (MB)", "agents"),
      { shapes: [{ type: "line", yref: "paper", y0: 0, y1: 1, x0: mem.target_mb, x1: mem.target_mb,
                   line: { color: "#c0392b", dash: "dash", width: 2 } }] }));
  }

  function agentExtras(data) {
    if (data.memory_series) {
      PD.draw("chart-memory-series", [
        { type: "scatter", mode: "lines+markers", name: "resident memory (max per step)",
          x: PD.dates(data.memory_series.t), y: data.memory_series.max.map((v) => (v === null ? null : v / 1e6)) },
      ], Object.assign(PD.layout("Agent memory over time", "time", "memory (MB)"),
        PD.hline(data.memory.target_mb, `target ${data.memory.target_mb} MB`)));
    }
    for (const [id, rows, noun] of [["slowest-tools", data.slowest.tools, "tools"], ["slowest-models", data.slowest.models, "models"]]) {
      PD.cells(document.getElementById(id), ["name", "calls", "p50", "p95", "p99"], rows,
        (r) => [r.others === undefined ? r.name : `others (${r.others} ${noun})`, r.count, PD.ms(r.p50), PD.ms(r.p95), PD.ms(r.p99)]);
    }
  }

  // Decimal units, as the admin shows thresholds (perfdash/lib/units.py): 100 MB = 1e8 bytes.
  function alerts(rows) {
    const drill = (r) => (r.scope === "node" ? `/nodes/${encodeURIComponent(r.subject)}/`
      : r.scope === "agent" ? `/agents/${encodeURIComponent(r.subject)}/` : "/");
    PD.cells(document.getElementById("alerts"), ["severity", "rule", "where", "value when it fired", "threshold", "firing since"],
      rows, (r) => [r.severity, r.rule, PD.link(drill(r), r.subject || "fleet"),
        r.shown.value || "no data", r.shown.threshold,
        new Date(r.since).toLocaleTimeString()]);
    const table = document.getElementById("alerts");
    table.dataset.firing = String(rows.length);
    if (!rows.length) table.tBodies[0].rows[0].cells[0].textContent = "nothing firing";
  }

  // Agents far above their node's other agents (perfdash/detect/outliers.py), farthest first.
  function outliers(rows) {
    const el = document.getElementById("outliers");
    PD.cells(el, ["agent", "node", "statistic", "value", "peers' median", "peers' band", "MADs above"], rows,
      (r) => [PD.link(`/agents/${encodeURIComponent(r.agent)}/`, r.agent), r.node,
              `${r.stat} of ${r.metric}, last ${r.window / 60} min`,
              r.shown.value, r.shown.peer_median, `${r.shown.peer_band[0]} to ${r.shown.peer_band[1]}`,
              r.mads.toFixed(1)]);
    if (!rows.length) el.tBodies[0].rows[0].cells[0].textContent = "no agent stands out from its peers";
  }

  function render(data) {
    kpis(data.kpis);
    llm(data.llm);
    alerts(data.alerts);
    if (data.outliers) outliers(data.outliers);
    if (data.nodes) nodes(data.nodes);
    latencyPanels(data.latency);
    memory(data.memory, Boolean(data.view.agent));
    if (data.slowest) agentExtras(data);
    document.body.dataset.rendered = String(Date.now());
  }

  PD.start("overview", render);
})();
