// The SLO page: each SLO's attainment, budget left, burn rates and burn-down, asked for again
// every minute (an error budget moves over minutes, not seconds).
"use strict";

(() => {
  const REFRESH_MS = 60000;
  const status = document.getElementById("live-status");
  status.dataset.state = "paused";
  status.textContent = "refreshed every minute";

  // Which pair of windows each window belongs to, and the burn rate that alerts.
  function alertsAt(t) {
    const x = (v) => `${Number(v.toFixed(1))}×`;
    return {
      "5m": `page at ${x(t.page_1h)} (with 1 h)`,
      "1h": `page at ${x(t.page_1h)} (with 5 min)`,
      "30m": `page at ${x(t.page_6h)} (with 6 h)`,
      "6h": `page at ${x(t.page_6h)} (with 30 min); ticket at ${x(t.ticket_3d)} (with 3 d)`,
      "3d": `ticket at ${x(t.ticket_3d)} (with 6 h)`,
    };
  }
  const LEAST = { "5m": "page_1h", "1h": "page_1h", "30m": "page_6h", "6h": "ticket_3d", "3d": "ticket_3d" };

  function figure(value, label) {
    const div = document.createElement("div");
    div.className = "figure";
    const span = document.createElement("span");
    span.textContent = value;
    const l = document.createElement("label");
    l.textContent = label;
    div.append(span, l);
    return div;
  }

  function card(s, i) {
    const section = document.createElement("section");
    section.className = "panel slo";
    const h2 = document.createElement("h2");
    h2.textContent = s.name;
    const what = document.createElement("small");
    what.textContent = s.shown.what;
    const badge = document.createElement("span");
    badge.className = "alerting";
    badge.dataset.level = s.alerting || (s.total ? "none" : "no-data");
    badge.textContent = s.alerting ? `burning: ${s.alerting}` : (s.total ? "within budget" : "no data yet");
    h2.append(" ", what, " ", badge);
    const figures = document.createElement("div");
    figures.className = "figures";
    const spender = s.top_spender
      ? PD.link(`/${s.top_spender.by === "node" ? "nodes" : "agents"}/${encodeURIComponent(s.top_spender.name)}/`,
        `${s.top_spender.name} (${Math.round(100 * s.top_spender.share)} % of bad events)`)
      : "–";
    const top = figure("", `${s.top_spender ? s.top_spender.by : "node"} that spent most`);
    top.querySelector("span").replaceChildren(spender);
    figures.append(figure(s.shown.attainment, "attainment"), figure(s.shown.budget_left, "error budget left"),
      figure(s.shown.time_left, "left at the last hour's burn"), top);
    const body = document.createElement("div");
    body.className = "body";
    const chart = document.createElement("div");
    chart.className = "chart";
    chart.id = `burn-down-${i}`;
    const table = document.createElement("table");
    table.className = "table";
    const at = alertsAt(s.burn_thresholds);
    PD.cells(table, ["window", "burn rate", "alerts"], Object.keys(s.burn_rates), (w) => [w, s.shown.burn_rates[w], at[w]]);
    table.querySelectorAll("tbody tr").forEach((tr, j) => {
      const w = Object.keys(s.burn_rates)[j];
      if ((s.burn_rates[w] ?? 0) >= s.burn_thresholds[LEAST[w]]) tr.cells[1].className = "hot";
    });
    body.append(chart, table);
    section.append(h2, figures, body);
    return section;
  }

  function burnDown(s, i) {
    const d = s.burn_down;
    const lay = PD.layout(`Error budget left over the last ${s.period}`, "time", "budget left (%)",
      { yaxis: { title: { text: "budget left (%)" }, automargin: true, zeroline: true, zerolinecolor: "#c0392b" } });
    // The whole period on the x axis: a line that starts late says how much of it has events.
    const days = parseInt(s.period, 10);
    const end = d.t.length ? d.t[d.t.length - 1] * 1000 : Date.now();
    Object.assign(lay.xaxis, { type: "date", range: [new Date(end - days * 86400e3), new Date(end)] });
    if (!d.t.length) {
      lay.annotations = [{ xref: "paper", yref: "paper", x: 0.5, y: 0.5, showarrow: false,
                           text: "no data in this period", font: { size: 15, color: "#667" } }];
      lay.yaxis.range = [0, 100];
    } else if (d.t[0] * 1000 > end - days * 86400e3 + 86400e3) {
      lay.annotations = [{ xref: "paper", yref: "paper", x: 0, y: 0.5, xanchor: "left", showarrow: false,
                           text: `no events before ${new Date(d.t[0] * 1000).toLocaleString()}`,
                           font: { size: 13, color: "#667" } }];
    }
    PD.draw(`burn-down-${i}`, d.t.length ? [{
      type: "scatter", mode: "lines", name: "budget left", line: { color: "#2e86c1", width: 2 },
      x: PD.dates(d.t), y: d.left.map((v) => 100 * v), fill: "tozeroy", fillcolor: "rgba(46,134,193,0.12)",
    }] : [], lay);
  }

  async function refresh() {
    try {
      const response = await fetch("/slos/data", { credentials: "same-origin" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const data = await response.json();
      const root = document.getElementById("slos");
      root.replaceChildren(...data.slos.map(card));
      if (!data.slos.length) root.textContent = "No SLO yet: add one in Settings → SLOs.";
      data.slos.forEach(burnDown);
      status.dataset.state = "paused";
      status.textContent = "refreshed every minute";
    } catch (err) {
      status.dataset.state = "error";
      status.textContent = `could not refresh (${err.message}); retrying`;
    }
    document.body.dataset.rendered = String(Date.now());
    setTimeout(refresh, REFRESH_MS);
  }

  refresh();
})();
