// The compare page: the form is the URL (the read API's compare parameters, so a page can be
// shared), the answer comes from GET /api/v1/compare: both cohorts' distributions, their
// statistics with intervals, the verdict in words, and the same comparison per tool and model.
"use strict";

(() => {
  const form = document.getElementById("compare-form");
  const tagValues = JSON.parse(document.getElementById("tag-values").textContent);
  const COHORT_FIELDS = ["node", "agent", "except_agent", "from", "to"];
  const STATS = ["p50", "p90", "p95", "p99", "mean", "rate"];
  const COLORS = { a: "#2e86c1", b: "#d35400" };
  const status = document.getElementById("live-status");
  status.dataset.state = "paused";
  status.textContent = "not live: compare reads stored history";

  const field = (cohort, name) => form.querySelector(`fieldset[data-cohort="${cohort}"] [name="${name}"]`);
  const isoOf = (v) => (/^\d+(\.\d+)?$/.test(v) ? new Date(Number(v) * 1000).toISOString().replace(".000", "") : v);

  // The URL's parameters into the form: a cohort's own (a.node) or the shared one (node).
  function fill(params) {
    for (const name of ["metric", "window", "stat", "min_effect"]) {
      const el = form.elements[name];
      if (!params.has(name)) continue;
      // A metric or window the lists do not offer (7d of a new metric, a link's 20m) is kept.
      if (el.tagName === "SELECT" && ![...el.options].some((o) => o.value === params.get(name))) {
        el.add(new Option(params.get(name), params.get(name)));
      }
      el.value = params.get(name);
    }
    for (const c of ["a", "b"]) {
      for (const name of COHORT_FIELDS) {
        const v = params.get(`${c}.${name}`) ?? params.get(name);
        if (v !== null) field(c, name).value = ["from", "to"].includes(name) ? isoOf(v) : v;
      }
      const tag = [...params.keys()].find((k) => k.startsWith(`${c}.tag.`))
        || [...params.keys()].find((k) => k.startsWith("tag."));
      if (tag) {
        field(c, "tag").value = tag.split("tag.")[1];
        field(c, "value").value = params.get(tag);
      }
      offer(c);
    }
  }

  function offer(c) {
    const list = document.getElementById(`values-${c}`);
    list.replaceChildren(...(tagValues[field(c, "tag").value] || []).map((v) => {
      const o = document.createElement("option");
      o.value = v;
      return o;
    }));
  }

  // The form into the URL: only what is filled in, each cohort's under its prefix.
  function query() {
    const p = new URLSearchParams();
    for (const name of ["metric", "window", "stat", "min_effect"]) {
      if (form.elements[name].value) p.set(name, form.elements[name].value.trim());
    }
    for (const c of ["a", "b"]) {
      for (const name of COHORT_FIELDS) {
        const v = field(c, name).value.trim();
        if (v) p.set(`${c}.${name}`, v);
      }
      const tag = field(c, "tag").value;
      if (tag && field(c, "value").value.trim()) p.set(`${c}.tag.${tag}`, field(c, "value").value.trim());
    }
    return p;
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    window.location.search = query().toString();
  });
  form.querySelectorAll('select[name="tag"]').forEach((el) => {
    el.addEventListener("change", () => offer(el.closest("fieldset").dataset.cohort));
  });

  async function ask(params) {
    const response = await fetch(`/api/v1/compare?${params}`, { credentials: "same-origin" });
    let body = {};
    try { body = await response.json(); } catch { /* the status says it */ }
    if (!response.ok) {
      const where = body.param ? ` (parameter ${body.param})` : "";
      throw new Error(`${body.error || `HTTP ${response.status}`}${where}`);
    }
    return body;
  }

  function fail(message) {
    const el = document.getElementById("verdict");
    el.dataset.verdict = "error";
    el.textContent = `Cannot compare: ${message}`;
    el.setAttribute("role", "alert");
  }

  // Both cohorts' share of points per bin, as steps on a log axis: the bins are alike for both
  // and of equal width on that axis, so the shapes compare directly whatever the counts.
  function histograms(body) {
    const unit = body.shown.unit ? ` (${body.shown.unit}, log scale)` : " (log scale)";
    const traces = ["a", "b"].map((c) => {
      const h = body.histograms[c];
      const total = h.count.reduce((s, n) => s + n, 0) || 1;
      const share = h.count.map((n) => (100 * n) / total);
      return {
        type: "scatter", mode: "lines", line: { shape: "hv", color: COLORS[c], width: 2 }, fill: "tozeroy",
        fillcolor: c === "a" ? "rgba(46,134,193,0.15)" : "rgba(211,84,0,0.15)",
        name: `${c}: ${PD.esc(body.labels[c] || c)} (n=${body[c].count})`,
        x: [...h.lo, h.hi[h.hi.length - 1]], y: [...share, share[share.length - 1]],
        hovertemplate: "%{y:.1f} % of points from %{x:.3~s}<extra></extra>",
      };
    });
    const empty = !body.histograms.a.count.length;
    const lay = PD.layout(`${PD.esc(body.metric)}: distribution of a and b`, `${PD.esc(body.metric)}${unit}`,
      "share of points per bin (%)", { xaxis: { type: "log", title: { text: `${PD.esc(body.metric)}${unit}` } } });
    if (body.histograms.ticks) {
      Object.assign(lay.xaxis, { tickmode: "array", tickvals: body.histograms.ticks.values, ticktext: body.histograms.ticks.text });
    }
    if (empty) {
      lay.annotations = [{ xref: "paper", yref: "paper", x: 0.5, y: 0.5, showarrow: false,
                           text: "no points in either cohort", font: { size: 16, color: "#667" } }];
    }
    PD.draw("chart-histograms", empty ? [] : traces, lay);
  }

  function valueCell(shown) {
    if (!shown) return "–";
    const span = document.createElement("span");
    span.textContent = `${shown.value} `;
    const interval = document.createElement("span");
    interval.className = "interval";
    interval.textContent = `[${shown.lo}, ${shown.hi}]`;
    span.appendChild(interval);
    return span;
  }

  const VERDICT_WORDS = { slower: "slower", faster: "faster", no_change: "no change", insufficient_data: "not enough data" };

  function verdictCell(verdict, stat) {
    const span = document.createElement("span");
    span.textContent = stat === "rate" && verdict !== "no_change" && verdict !== "insufficient_data"
      ? (verdict === "slower" ? "higher" : "lower") : VERDICT_WORDS[verdict];
    return span;
  }

  function statsTable(body) {
    const stats = STATS.filter((s) => s in body.diff);
    const el = document.getElementById("stats");
    PD.cells(el, ["statistic", `a: ${body.labels.a}`, `b: ${body.labels.b}`, "change of b (interval)", "verdict"],
      stats, (s) => [s, valueCell(body.shown.a[s]), valueCell(body.shown.b[s]), body.shown.diff[s] || "–",
                     verdictCell(body.diff[s].verdict, s)]);
    el.querySelectorAll("tbody tr").forEach((tr, i) => {
      tr.lastChild.dataset.verdict = body.diff[stats[i]].verdict;
      if (stats[i] === body.stat) tr.style.fontWeight = "600";
    });
    document.getElementById("method").textContent = `Method: ${body.method}.`;
    document.getElementById("notes").replaceChildren(...body.notes.map((n) => {
      const li = document.createElement("li");
      li.textContent = n;
      return li;
    }));
  }

  // The same cohorts, per tool (or model): largest effect first.
  async function breakdown(params, metric, by, id) {
    const el = document.getElementById(id);
    const p = new URLSearchParams(params);
    p.set("metric", metric);
    p.set("by", by);
    p.delete("stat");
    el.textContent = "comparing…";
    let body;
    try {
      body = await ask(p);
    } catch (err) {
      el.replaceChildren(Object.assign(document.createElement("p"), { className: "note", textContent: err.message }));
      return;
    }
    const table = document.createElement("table");
    table.className = "table";
    const stat = body.stat;
    PD.cells(table, [by, "points a / b", `${stat} a`, `${stat} b`, "change of b (interval)", "verdict"],
      body.breakdown.rows, (r) => [r.value, `${r.a.count} / ${r.b.count}`, valueCell(r.shown.a[stat]),
                                    valueCell(r.shown.b[stat]), r.shown.diff[stat] || "–",
                                    verdictCell(r.diff[stat].verdict, stat)]);
    table.querySelectorAll("tbody tr").forEach((tr, i) => {
      const row = body.breakdown.rows[i];
      if (row) { tr.lastChild.dataset.verdict = row.diff[stat].verdict; tr.title = row.summary; }
    });
    el.replaceChildren(table);
    if (body.breakdown.left_out) {
      el.appendChild(Object.assign(document.createElement("p"), { className: "note",
        textContent: `${body.breakdown.left_out} ${by} values with fewer points are not compared.` }));
    }
  }

  async function show() {
    const params = new URLSearchParams(window.location.search);
    fill(params);
    if (!params.has("metric")) {
      document.getElementById("empty").hidden = false;
      document.body.dataset.rendered = String(Date.now());
      return;
    }
    document.getElementById("result").hidden = false;
    const asked = query();
    let body;
    try {
      asked.set("histograms", "1");
      body = await ask(asked);
    } catch (err) {
      fail(err.message);
      document.getElementById("result").querySelectorAll("section").forEach((s) => { s.hidden = true; });
      document.body.dataset.rendered = String(Date.now());
      return;
    }
    const verdict = document.getElementById("verdict");
    verdict.dataset.verdict = body.verdict;
    verdict.textContent = body.summary;
    histograms(body);
    statsTable(body);
    asked.delete("histograms");
    const tagged = [...asked.keys()].some((k) => k.includes("tag."));
    if (tagged) {
      for (const id of ["by-tool", "by-model"]) {
        document.getElementById(id).textContent = "A breakdown needs cohorts that do not filter on a tag "
          + "(each stored row carries one tag): compare two time ranges, nodes or agents to see it.";
      }
    } else {
      await Promise.all([breakdown(asked, "tool_execution_ms", "tool", "by-tool"),
                         breakdown(asked, "llm_call_ms", "model", "by-model")]);
    }
    document.body.dataset.rendered = String(Date.now());
  }

  show();
})();
