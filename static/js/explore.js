// The explorer: the form is the URL (the read API's names: metric, stat, window, step, node,
// agent, tag.K; plus group, top and ratio), the data comes from /data/explore and then live.
// It draws the statistics over time (one chart per unit), the histogram of latency-like
// metrics and the table of groups; values in the table are formatted by the server.
"use strict";

(() => {
  const form = document.getElementById("explore-form");
  const page = document.getElementById("page");
  const tagValues = JSON.parse(document.getElementById("tag-values").textContent);
  const PALETTE = ["#2e86de", "#e67e22", "#8e44ad", "#16a085", "#c0392b", "#2c3e50", "#d4ac0d",
                   "#7f8c8d", "#27ae60", "#e84393"];
  const TEXT = ["metric", "ratio", "window", "step", "node", "agent", "group", "top"];

  // The URL into the form (what the server rendered stays where the URL says nothing).
  function fill(params) {
    for (const name of TEXT) {
      if (!params.has(name)) continue;
      const el = form.elements[name];
      if (el.tagName === "SELECT" && ![...el.options].some((o) => o.value === params.get(name))) {
        el.add(new Option(params.get(name), params.get(name)));
      }
      el.value = params.get(name);
    }
    if (params.has("ratio")) form.elements.metric.value = params.get("metric") || "";
    const stats = params.getAll("stat");
    if (stats.length) {
      form.querySelectorAll('input[name="stat"]').forEach((box) => { box.checked = stats.includes(box.value); });
    }
    const tag = [...params.keys()].find((k) => k.startsWith("tag."));
    if (tag) {
      form.elements.tag.value = tag.slice(4);
      form.elements.value.value = params.get(tag);
    }
    offer();
  }

  function offer() {
    const list = document.getElementById("tag-value-list");
    list.replaceChildren(...(tagValues[form.elements.tag.value] || []).map((v) => new Option(v)));
  }

  // The form into the URL: only what is filled in.
  function query() {
    const p = new URLSearchParams();
    const ratio = form.elements.ratio.value;
    if (ratio) p.set("ratio", ratio);
    else if (form.elements.metric.value.trim()) p.set("metric", form.elements.metric.value.trim());
    if (!ratio) {
      form.querySelectorAll('input[name="stat"]:checked').forEach((box) => p.append("stat", box.value));
    }
    for (const name of ["window", "step", "node", "agent", "group"]) {
      const v = form.elements[name].value.trim();
      if (v) p.set(name, v);
    }
    if (form.elements.group.value && form.elements.top.value) p.set("top", form.elements.top.value);
    const tag = form.elements.tag.value;
    if (tag && form.elements.value.value.trim()) p.set(`tag.${tag}`, form.elements.value.value.trim());
    return p;
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    window.location.search = query().toString();
  });
  form.elements.tag.addEventListener("change", offer);
  // A ratio has no statistics to choose: the boxes stand aside while one is chosen.
  const ratioChosen = () => { form.querySelector("fieldset.stats").disabled = Boolean(form.elements.ratio.value); };
  form.elements.ratio.addEventListener("change", ratioChosen);

  const unitText = (unit) => (unit ? ` (${unit})` : "");
  const lineName = (line, grouped) => {
    const who = line.group === "" ? (grouped ? "all" : "") : PD.esc(line.group);
    return who ? `${who} · ${line.stat}` : line.stat;
  };

  // One time chart per unit: p50 and p95 share one, a count gets its own.
  function charts(data) {
    const root = document.getElementById("charts");
    const byUnit = new Map();
    for (const s of data.stats) {
      const unit = data.units[s];
      if (!byUnit.has(unit)) byUnit.set(unit, []);
      byUnit.get(unit).push(s);
    }
    const ids = [...byUnit.keys()].map((_, i) => `chart-series-${i}`);
    if (root.dataset.charts !== ids.join(",")) {
      root.replaceChildren(...ids.map((id) => Object.assign(document.createElement("div"), { id, className: "chart" })));
      root.dataset.charts = ids.join(",");
    }
    const t = PD.dates(data.t);
    const grouped = Boolean(data.view.group);
    const groups = [...new Set(data.lines.map((l) => l.group))];
    const empty = !data.rows.length;
    const where = data.view.group ? ` by ${PD.esc(data.view.group)}` : "";
    [...byUnit.entries()].forEach(([unit, stats], i) => {
      const lines = data.lines.filter((l) => stats.includes(l.stat));
      const traces = empty ? [] : lines.map((l) => {
        const color = l.group === "" && grouped ? "#7f8c8d" : PALETTE[groups.indexOf(l.group) % PALETTE.length];
        return {
          type: "scatter", mode: "lines+markers", name: lineName(l, grouped), x: t, y: l.values,
          connectgaps: false, marker: { size: 4 },
          line: { color, width: l.group === "" && grouped ? 2.5 : 1.5,
                  dash: ["solid", "dot", "dash", "dashdot"][stats.indexOf(l.stat) % 4] },
        };
      });
      const title = data.kind === "ratio" ? `${PD.esc(data.title)}: ${PD.esc(data.formula)}`
        : `${PD.esc(data.title)}: ${stats.join(" / ")}${where} per ${data.step}`;
      const yTitle = data.kind === "ratio" ? data.title : `${PD.esc(data.title)} ${stats.join(", ")}${unitText(unit)}`;
      const lay = PD.layout(title, "time", yTitle);
      if (data.view.ratio === "hit_rate") lay.yaxis.tickformat = ".0%";
      if (unit === "B") lay.yaxis.tickformat = "~s";
      if (empty) {
        Object.assign(lay.xaxis, { type: "date", range: PD.dates(data.range) });
        lay.annotations = [{ xref: "paper", yref: "paper", x: 0.5, y: 0.5, showarrow: false,
                             text: "no data in this window", font: { size: 16, color: "#667" } }];
      }
      PD.draw(ids[i], traces, lay);
    });
  }

  function histogram(data) {
    const panel = document.getElementById("histogram-panel");
    panel.hidden = !data.histogram;
    if (!data.histogram) return;
    const buckets = data.histogram.buckets;
    const x = buckets.length ? [...buckets.map((b) => b.lower), buckets[buckets.length - 1].upper] : [];
    const y = buckets.length ? [...buckets.map((b) => b.count), 0] : [];
    const unit = data.units[data.stats[0]] === "ms" || data.title.endsWith("_ms") ? "ms" : "";
    const lay = PD.layout(`${PD.esc(data.title)}: distribution over the window`,
      `${PD.esc(data.title)}${unitText(unit)}, log scale`, "points",
      { xaxis: { type: "log", title: { text: `${PD.esc(data.title)}${unitText(unit)}, log scale` } } });
    if (!buckets.length) {
      lay.annotations = [{ xref: "paper", yref: "paper", x: 0.5, y: 0.5, showarrow: false,
                           text: "no data in this window", font: { size: 16, color: "#667" } }];
    }
    PD.draw("chart-histogram", buckets.length ? [
      { type: "scatter", mode: "lines", line: { shape: "hv", color: "#2e86de" }, fill: "tozeroy",
        name: `${PD.esc(data.title)} (n=${data.histogram.count})`, x, y },
    ] : [], lay);
  }

  function drill(group, name) {
    if (group === "node") return PD.link(`/nodes/${encodeURIComponent(name)}/`, name);
    if (group === "agent") return PD.link(`/agents/${encodeURIComponent(name)}/`, name);
    return name;
  }

  function table(data) {
    const group = data.view.group;
    const noun = (n) => (n === 1 || group.endsWith("s") ? group : `${group}s`);
    // A ratio's groups are counted (and ranked) by its denominator's events, e.g. lookups.
    const counted = data.count_name || "points";
    document.getElementById("table-title").textContent = group
      ? `By ${group}: the top ${data.view.top} by ${counted}, the others together, and all`
      : "Over the window";
    PD.cells(document.getElementById("groups"), [group || "scope", counted, ...data.stats], data.rows, (r) => [
      r.others !== undefined ? `others (${r.others} ${noun(r.others)})` : r.all ? "all" : drill(group, r.name),
      r.count, ...data.stats.map((s) => r.shown[s]),
    ]);
    const link = document.getElementById("alert-link");
    const why = document.getElementById("alert-why");
    const staff = page.dataset.staff === "1";
    link.hidden = !(staff && data.alert.url);
    if (data.alert.url) {
      link.href = data.alert.url;
      link.title = `A rule on ${data.alert.statistic}, starting from the value over the window: ${data.alert.threshold}`;
    }
    why.textContent = !staff ? "" : data.alert.url ? `threshold ${data.alert.threshold} (${data.alert.statistic} over the window)`
      : `No alert: ${data.alert.why}.`;
    document.getElementById("notes").replaceChildren(...data.notes.map((n) => Object.assign(document.createElement("li"), { textContent: n })));
  }

  function render(data) {
    const list = document.getElementById("metric-list");
    if (list.options.length !== data.metrics.length) {
      list.replaceChildren(...data.metrics.map((m) => new Option(m)));
    }
    const scope = [data.view.node && `node ${data.view.node}`, data.view.agent && `agent ${data.view.agent}`,
                   data.view.tag_key && `${data.view.tag_key}=${data.view.tag_value}`].filter(Boolean).join(", ");
    document.getElementById("subtitle").textContent =
      `${data.title} · last ${data.view.window}, step ${data.step}${scope ? ` · ${scope}` : ""}`;
    const unseen = document.getElementById("unseen");
    unseen.hidden = data.seen;
    unseen.textContent = data.kind === "ratio"
      ? `None of ${data.formula} has been seen yet: the chart fills in as points arrive.`
      : `No metric ${data.title} has been seen yet: it shows here as soon as its first points arrive.`;
    charts(data);
    histogram(data);
    table(data);
    document.body.dataset.rendered = String(Date.now());
  }

  fill(new URLSearchParams(window.location.search));
  ratioChosen();
  PD.start("explore", render);
})();
