// Shared by every dashboard page: first paint over HTTP (retried with backoff, the failure shown
// on the page), live updates over a websocket that reconnects with backoff, and the chart
// helpers (titles, units, axes and legends on all; event markers on every time chart).
"use strict";

const PD = (() => {
  const page = document.getElementById("page");

  function params(extra) {
    const p = new URLSearchParams(window.location.search);
    for (const key of ["node", "agent"]) if (page.dataset[key]) p.set(key, page.dataset[key]);
    for (const [k, v] of Object.entries(extra || {})) p.set(k, v);
    return p;
  }

  const status = document.getElementById("live-status");
  const showStatus = (state, text) => { status.dataset.state = state; status.textContent = text; };
  const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

  // A failed data request; `retry` when asking again may succeed (the server or the network).
  class LoadError extends Error {
    constructor(message, retry) { super(message); this.retry = retry; }
  }

  async function serverSays(response) {
    try {
      const body = await response.json();
      return body.error ? ` (${body.error})` : "";
    } catch {
      return "";  // not JSON: the status says it
    }
  }

  async function fetchData(path) {
    let response;
    try {
      response = await fetch(`${path}?${params()}`, { credentials: "same-origin" });
    } catch (err) {
      throw new LoadError(`network error (${err.message})`, true);
    }
    if (!response.ok) {
      const answer = `HTTP ${response.status} ${response.statusText}`.trim();
      // Other 4xx answers come back the same however often the same request is sent.
      const retry = response.status >= 500 || response.status === 408 || response.status === 429;
      throw new LoadError(`${answer}${await serverSays(response)}`, retry);
    }
    try {
      return await response.json();
    } catch {
      throw new LoadError("the answer is not JSON", true);
    }
  }

  function banner() {
    const el = document.createElement("div");
    el.id = "load-error";
    el.className = "load-error";
    el.setAttribute("role", "alert");
    page.prepend(el);
    return el;
  }

  // The page's data, however many tries it takes: the failure and the countdown to the next
  // try stay on the page, waits double from 1 s up to 30 s. Null when asking again cannot help.
  async function load(name) {
    const path = `/data/${name}`;
    let el = null;
    for (let wait = 1; ; wait = Math.min(wait * 2, 30)) {
      try {
        const data = await fetchData(path);
        if (el) {
          el.remove();
          showStatus("connecting", "connecting…");
        }
        return data;
      } catch (err) {
        if (!(err instanceof LoadError)) throw err;
        showStatus("error", "no data");
        el = el || banner();
        const say = (next) => { el.textContent = `Could not load the ${name} data (GET ${path}): ${err.message}. ${next}`; };
        if (!err.retry) {
          say("Check the filters, then reload the page.");
          return null;
        }
        for (let left = wait; left > 0; left -= 1) {
          say(`Retrying in ${left} s…`);
          await sleep(1000);
        }
        say("Retrying now…");
      }
    }
  }

  const TOO_MANY_SOCKETS = 4429;  // the server's close code (dashboard/consumers.py)

  function live(name, onData) {
    let delay = 1000;
    function open() {
      const scheme = window.location.protocol === "https:" ? "wss" : "ws";
      const socket = new WebSocket(`${scheme}://${window.location.host}/ws/live/?${params({ page: name })}`);
      socket.onopen = () => { delay = 1000; showStatus("live", "live"); };
      socket.onmessage = (event) => {
        const message = JSON.parse(event.data);
        if (message.type !== "update") return;
        // A server with many distinct views open updates the later ones less often: say so.
        if (message.every > 1) showStatus("slow", `live · every ${Math.round(message.every)} s (busy server)`);
        else showStatus("live", "live");
        onData(message.data);
      };
      socket.onclose = (event) => {
        if (event.code === TOO_MANY_SOCKETS) {
          // This account (or server) has too many live pages open: try again much later.
          showStatus("paused", "live paused: too many open pages — close some tabs");
          setTimeout(open, 60000);
          return;
        }
        showStatus("reconnecting", `reconnecting in ${Math.round(delay / 1000)} s…`);
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

  // Events (deploys, config changes, incidents, notes) in the page's latest data, newest
  // first; the server sends at most 50. Every time chart marks each with a dotted line and,
  // for the hover, an invisible trace along it topped by a visible triangle.
  let events = [];
  const KIND_COLORS = { deploy: "#6c5ce7", config: "#00838f", incident: "#d35400", note: "#7f8c8d" };
  const ALONG = [0, 0.25, 0.5, 0.75, 1];  // heights (in the chart's fraction) that hover the line

  const isTimeChart = (traces, lay) => (lay.xaxis && lay.xaxis.type === "date")
    || traces.some((t) => Array.isArray(t.x) && t.x[0] instanceof Date);

  // What a deploy's verification found (perfdash/compare/verify.py), one line per metric.
  function verified(v) {
    if (!v) return "";
    const against = v.against ? `against ${esc(v.against)}, ${esc(v.how)}` : esc(v.how);
    const lines = Object.entries(v.metrics || {}).map(
      ([m, r]) => `${esc(m)}: ${esc(r.verdict.replace("_", " "))}${r.change ? ` · ${esc(r.change)}` : ""}`);
    return `<br><b>verified ${against}: ${esc(v.verdict.replace("_", " "))}</b><br>${lines.join("<br>")}`;
  }

  function eventText(e) {
    const tags = Object.entries(e.tags || {}).map(([k, v]) => `${esc(k)}=${esc(v)}`).join(", ");
    const when = new Date(e.ts * 1000).toLocaleString();
    return `<b>${esc(e.title)}</b><br>${esc(e.kind)} · ${esc(when)}${tags ? `<br>${tags}` : ""}`
      + `${verified(e.verification)}<br><i>click: the hour before against the hour after</i>`;
  }

  // The compare page for an event: the hour before it against the hour after, on its node if
  // it names one.
  function compareAround(e) {
    const t = Math.floor(e.ts);
    const p = new URLSearchParams({ metric: "agent_response_ms", window: "1h", "a.to": t, "b.from": t });
    if (e.tags && e.tags.node) p.set("node", e.tags.node);
    return `/compare/?${p}`;
  }

  function withEvents(traces, lay) {
    if (!events.length || !isTimeChart(traces, lay)) return [traces, lay];
    const color = (e) => KIND_COLORS[e.kind] || "#7f8c8d";
    const lines = events.map((e) => ({
      type: "line", xref: "x", yref: "paper", x0: new Date(e.ts * 1000), x1: new Date(e.ts * 1000), y0: 0, y1: 1,
      line: { color: color(e), width: 1.5, dash: "dot" }, layer: "below" }));
    const points = events.flatMap((e) => ALONG.map((y) => ({ e, y })));
    const hover = {
      type: "scatter", mode: "markers", name: "events", showlegend: false, yaxis: "y9", cliponaxis: false,
      x: points.map((p) => new Date(p.e.ts * 1000)), y: points.map((p) => p.y),
      hovertext: points.map((p) => eventText(p.e)), hoverinfo: "text", customdata: points.map((p) => compareAround(p.e)),
      marker: { symbol: "triangle-down", size: 11, color: points.map((p) => color(p.e)),
                opacity: points.map((p) => (p.y === 1 ? 1 : 0)) },
    };
    // The hover trace has a hidden axis of its own (no page uses y9): 0 to 1, whatever the
    // chart's range or scale.
    const marked = Object.assign({}, lay, {
      shapes: [...(lay.shapes || []), ...lines],
      yaxis9: { overlaying: "y", range: [0, 1], visible: false, fixedrange: true },
    });
    return [[...traces, hover], marked];
  }

  function draw(id, traces, lay) {
    const el = document.getElementById(id);
    if (!el) return el;
    Plotly.react(el, ...withEvents(traces, lay), config);
    if (!el.dataset.eventClicks) {
      el.dataset.eventClicks = "1";
      el.on("plotly_click", (click) => {
        const point = click.points[0];
        if (point && point.data.name === "events") window.location = point.customdata;
      });
    }
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

  // First paint, then live updates: the socket opens only once the page has its data.
  async function start(name, render, onUpdate = render) {
    const data = await load(name);
    if (data === null) return;
    events = data.events || [];
    render(data);
    live(name, (update) => {
      events = update.events || [];
      onUpdate(update);
    });
  }

  function link(href, text) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    return a;
  }

  // Seconds in a window such as "5m", "1h", "24h" or "7d".
  function seconds(window) {
    const m = /^(\d+)([mhd])$/.exec(window || "1h");
    return m ? Number(m[1]) * { m: 60, h: 3600, d: 86400 }[m[2]] : 3600;
  }

  // The compare page for the page's window against the one before it.
  function compareWindows(extra) {
    const window = new URLSearchParams(location.search).get("window") || "1h";
    const t = Math.floor(Date.now() / 1000) - seconds(window);
    return `/compare/?${new URLSearchParams({ window, "a.to": t, "b.from": t, ...extra })}`;
  }

  return { start, esc, ms, fmt, dates, layout, draw, hline, cells, link, compareWindows };
})();

// perfdash's own health: the header's status turns amber while ingest is more than 60 s
// behind, or while nothing records perfdash's health (docs/dashboard.md); the server says why.
// One small request every 30 s, whatever the page.
(() => {
  const status = document.getElementById("live-status");
  async function check() {
    let health;
    try {
      const response = await fetch("/data/health", { credentials: "same-origin" });
      if (!response.ok) return;
      health = await response.json();
    } catch {
      return;  // the server is away: the live status already says so
    }
    if (health.behind) {
      status.dataset.behind = "";
      status.title = health.reason;
    } else {
      delete status.dataset.behind;
      status.removeAttribute("title");
    }
  }
  check();
  setInterval(check, 30000);
})();
