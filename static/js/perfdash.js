// Shared by every dashboard page: first paint over HTTP, live updates over a websocket that
// reconnects with backoff, and the chart helpers (titles, units, axes and legends on all).
"use strict";

const PD = (() => {
  const page = document.getElementById("page");

  function params(extra) {
    const p = new URLSearchParams(window.location.search);
    for (const key of ["node", "agent"]) if (page.dataset[key]) p.set(key, page.dataset[key]);
    for (const [k, v] of Object.entries(extra || {})) p.set(k, v);
    return p;
  }

  async function load(name) {
    const response = await fetch(`/data/${name}?${params()}`, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`data request failed: ${response.status}`);
    return response.json();
  }

  function live(name, onData) {
    const status = document.getElementById("live-status");
    let delay = 1000;
    const show = (state, text) => { status.dataset.state = state; status.textContent = text; };
    function open() {
      const scheme = window.location.protocol === "https:" ? "wss" : "ws";
      const socket = new WebSocket(`${scheme}://${window.location.host}/ws/live/?${params({ page: name })}`);
      socket.onopen = () => { delay = 1000; show("live", "live"); };
      socket.onmessage = (event) => {
        const message = JSON.parse(event.data);
        if (message.type !== "update") return;
        onData(message.data);
      };
      socket.onclose = () => {
        show("reconnecting", `reconnecting in ${Math.round(delay / 1000)} s…`);
        setTimeout(open, delay);
        delay = Math.min(delay * 2, 30000);
      };
    }
    open();
  }

  // Names come from agents: untrusted. Plotly renders a few HTML tags in labels, so hand it
  // entities (which it shows as text); tables use textContent.
  const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

  function ms(v) {
    if (v === null || v === undefined) return "–";
    return v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(v < 10 ? 2 : 0)} ms`;
  }

  const fmt = (v, digits = 1) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));
  const dates = (ts) => ts.map((t) => new Date(t * 1000));

  function layout(title, xTitle, yTitle, extra) {
    return Object.assign({
      title: { text: title, font: { size: 15 } },
      margin: { l: 64, r: 16, t: 44, b: 52 },
      xaxis: { title: { text: xTitle }, automargin: true },
      yaxis: { title: { text: yTitle }, automargin: true, rangemode: "tozero" },
      legend: { orientation: "h", y: -0.25 },
      showlegend: true,
      paper_bgcolor: "#fff", plot_bgcolor: "#fff",
    }, extra || {});
  }

  const config = { displaylogo: false, responsive: true };

  function draw(id, traces, lay) {
    const el = document.getElementById(id);
    if (el) Plotly.react(el, traces, lay, config);
    return el;
  }

  function hline(value, label) {
    return {
      shapes: [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: value, y1: value,
                 line: { color: "#c0392b", dash: "dash", width: 2 } }],
      annotations: [{ xref: "paper", x: 1, y: value, xanchor: "right", yanchor: "bottom", text: label,
                      showarrow: false, font: { color: "#c0392b" } }],
    };
  }

  function cells(table, header, rows, render) {
    table.replaceChildren();
    const head = table.createTHead().insertRow();
    for (const h of header) { const th = document.createElement("th"); th.textContent = h; head.appendChild(th); }
    const body = table.createTBody();
    for (const row of rows) {
      const tr = body.insertRow();
      for (const value of render(row)) {
        const td = tr.insertCell();
        if (value instanceof Node) td.appendChild(value); else td.textContent = value;
      }
    }
    if (!rows.length) {
      const td = body.insertRow().insertCell();
      td.colSpan = header.length;
      td.textContent = "no data in this window";
    }
  }

  function link(href, text) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    return a;
  }

  return { load, live, esc, ms, fmt, dates, layout, draw, hline, cells, link };
})();
