// Capacity: per target, history and forecast with 80/95 % bands, the limit and the estimated
// crossing; time to limit per subject; recommended nodes. The what-if growth is in the URL.
"use strict";

(() => {
  const UNITS = {
    agents: { scale: 1, axis: "active agents", fmt: (v) => Math.round(v).toLocaleString() },
    bytes: { scale: 1e-9, axis: "memory (GB)", fmt: (v) => `${(v / 1e9).toFixed(1)} GB` },
    "points/s": { scale: 1, axis: "points / s", fmt: (v) => `${Math.round(v).toLocaleString()} points/s` },
    ms: { scale: 1, axis: "response time p95 (ms)", fmt: (v) => PD.ms(v) },
  };
  const days = (d) => (d === null || d === undefined ? "–" : `${d.toFixed(1)} d`);

  function interval(s) {
    if (!s.ok) return s.reason;
    if (s.days === null) return "not within the horizon";
    if (s.days <= 0) return "at or over the limit now";
    return `${days(s.days)} (80 %: ${days(s.earliest_days)}–${s.latest_days === null ? "beyond" : days(s.latest_days)})`;
  }

  function summary(targets) {
    PD.cells(document.getElementById("summary"), ["target", "outlook", "recommended", "model (backtest MASE)"],
      targets, (t) => {
        const fleet = t.subjects.find((s) => s.subject === "") || {};
        const rec = t.recommendation;
        return [t.title, t.summary, rec ? rec.text : "–",
          fleet.ok ? `${fleet.model} (${PD.fmt(fleet.mase, 2)})` : "–"];
      });
  }

  function section(t) {
    const root = document.getElementById("targets");
    let el = document.getElementById(`target-${t.kind}`);
    if (!el) {
      el = document.createElement("section");
      el.className = "panel target";
      el.id = `target-${t.kind}`;
      el.innerHTML = `<h2></h2><p class="outlook"></p><p class="why"></p><div class="charts"></div>
        <div class="subjects"><table class="table"></table></div>`;
      root.appendChild(el);
    }
    el.querySelector("h2").textContent = t.title;
    const small = document.createElement("small");
    small.textContent = `${Math.round(t.headroom * 100)} % headroom, ${t.horizon_days}-day horizon`;
    el.querySelector("h2").appendChild(small);
    el.querySelector(".outlook").textContent = t.recommendation ? `${t.summary} Recommended: ${t.recommendation.text}` : t.summary;
    el.querySelector(".why").textContent = t.recommendation ? t.recommendation.why : "";
    return el;
  }

  function chart(holder, id, t, c) {
    let div = document.getElementById(id);
    if (!div) {
      div = document.createElement("div");
      div.className = "chart";
      div.id = id;
      holder.appendChild(div);
    }
    const u = UNITS[t.unit];
    const y = (vs) => vs.map((v) => (v === null ? null : v * u.scale));
    const ft = PD.dates(c.forecast.t);
    const who = c.subject ? PD.esc(c.subject) : "fleet total";
    const traces = [
      { type: "scatter", mode: "lines", name: "history", x: PD.dates(c.history.t), y: y(c.history.y),
        line: { color: "#2e86de" } },
    ];
    if (c.ok) {
      traces.push(
        { type: "scatter", mode: "lines", x: ft, y: y(c.forecast.upper95), line: { width: 0 }, hoverinfo: "skip",
          showlegend: false },
        { type: "scatter", mode: "lines", name: "95 % interval", x: ft, y: y(c.forecast.lower95), fill: "tonexty",
          fillcolor: "rgba(230,126,34,0.15)", line: { width: 0 } },
        { type: "scatter", mode: "lines", x: ft, y: y(c.forecast.upper80), line: { width: 0 }, hoverinfo: "skip",
          showlegend: false },
        { type: "scatter", mode: "lines", name: "80 % interval", x: ft, y: y(c.forecast.lower80), fill: "tonexty",
          fillcolor: "rgba(230,126,34,0.35)", line: { width: 0 } },
        { type: "scatter", mode: "lines", name: "forecast", x: ft, y: y(c.forecast.mean),
          line: { color: "#e67e22", dash: "dash" } });
    }
    const cross = c.crossing;
    if (cross.at !== null) {
      const at = cross.at * 1000;
      traces.push({ type: "scatter", mode: "markers", name: "estimated crossing (80 % interval)",
        x: [new Date(at)], y: [c.limit * u.scale], marker: { symbol: "x", size: 14, color: "#c0392b" },
        error_x: { type: "data", symmetric: false, color: "#c0392b",
          array: [cross.latest === null ? c.horizon_end * 1000 - at : cross.latest * 1000 - at],
          arrayminus: [at - cross.earliest * 1000] } });
    }
    // The model can be three names long: a second, smaller line.
    const model = c.ok ? `${c.model} (backtest MASE ${PD.fmt(c.mase, 2)})` : c.reason;
    const lay = Object.assign(PD.layout(`${PD.esc(t.title)}: ${who}<br><sub>${PD.esc(model)}</sub>`, "time", u.axis),
      PD.hline(c.limit * u.scale, `limit ${u.fmt(c.limit)}`));
    lay.title.font.size = 13;
    lay.margin.t = 56;
    lay.xaxis.type = "date";
    if (!c.history.t.length) lay.xaxis.visible = false;  // no dates to show
    if (!c.ok) {
      lay.annotations.push({ xref: "paper", yref: "paper", x: 0.5, y: 0.5, showarrow: false,
                             text: `no forecast: ${PD.esc(c.reason)}`, font: { size: 14, color: "#667" } });
    }
    PD.draw(id, traces, lay);
  }

  function subjects(el, t) {
    const perNode = t.subjects.some((s) => s.subject);
    const wrap = el.querySelector(".subjects");
    wrap.hidden = !perNode;
    if (!perNode) return;
    const u = UNITS[t.unit];
    PD.cells(wrap.querySelector("table"), ["subject", "now", "limit", "time to limit (80 % interval)", "model", "MASE"],
      t.subjects, (s) => {
        const search = new URLSearchParams(window.location.search);
        search.set("node", s.subject);
        return [s.subject ? PD.link(`?${search}`, s.subject) : "fleet total", s.now === null ? "–" : u.fmt(s.now),
          u.fmt(s.limit), interval(s), s.model || "–", PD.fmt(s.mase, 2)];
      });
  }

  function render(data) {
    const fitted = document.getElementById("fitted");
    fitted.textContent = data.fitted_at ? `fitted ${new Date(data.fitted_at).toLocaleString()}` : "forecasts not fitted yet: fitting…";
    summary(data.targets);
    // A target disabled since the last draw loses its section; a chart no longer shown, its div.
    const kinds = new Set(data.targets.map((t) => `target-${t.kind}`));
    for (const el of document.querySelectorAll("#targets > section")) if (!kinds.has(el.id)) el.remove();
    for (const t of data.targets) {
      const el = section(t);
      const holder = el.querySelector(".charts");
      holder.classList.toggle("one", t.charts.length === 1);
      t.charts.forEach((c, i) => chart(holder, `chart-${t.kind}-${i}`, t, c));
      for (const extra of [...holder.children].slice(t.charts.length)) extra.remove();
      subjects(el, t);
    }
    document.body.dataset.rendered = String(Date.now());
  }

  document.getElementById("refit").addEventListener("click", async () => {
    const status = document.getElementById("refit-status");
    const token = document.querySelector("input[name=csrfmiddlewaretoken]").value;
    const response = await fetch("/capacity/refit", { method: "POST", headers: { "X-CSRFToken": token },
                                                      credentials: "same-origin" });
    status.textContent = response.ok ? "refitting… the charts redraw when it is done" : `refit failed: ${response.status}`;
  });

  PD.start("capacity", render, (data) => {
    document.getElementById("refit-status").textContent = "";
    render(data);
  });
})();
