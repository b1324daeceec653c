// A board: one chart per panel, each the explorer's data for the panel's query (window from
// the board's selector when one is chosen), with the panel's title, units and target line.
// First paint from /data/board/<slug>, then live over the one socket of the board.
"use strict";

(() => {
  const page = document.getElementById("page");
  const slug = page.dataset.slug;
  const form = document.getElementById("board-form");
  const PALETTE = ["#2e86de", "#e67e22", "#8e44ad", "#16a085", "#c0392b", "#2c3e50", "#d4ac0d",
                   "#7f8c8d", "#27ae60", "#e84393"];

  form.elements.window.addEventListener("change", () => {
    const p = new URLSearchParams(window.location.search);
    if (form.elements.window.value) p.set("window", form.elements.window.value); else p.delete("window");
    window.location.search = p.toString();
  });

  // The panels' boxes, made again only when the board's panels change.
  function boxes(panels) {
    const root = document.getElementById("panels");
    const shape = panels.map((p) => `${p.title}\u0000${p.query}`).join("\u0001");
    if (root.dataset.shape === shape) return;
    root.dataset.shape = shape;
    root.replaceChildren(...panels.map((p, i) => {
      const box = document.createElement("section");
      box.className = "panel board-panel";
      box.innerHTML = `<div class="chart" id="panel-${i}"></div><p class="panel-error" hidden></p>
        <div class="panel-foot"><span class="panel-note"></span><a class="panel-explore">open in the explorer</a></div>`;
      return box;
    }));
  }

  const lineName = (l, grouped, several) => {
    const who = l.group === "" ? (grouped ? "all" : "") : PD.esc(l.group);
    if (!several) return who || l.stat;
    return who ? `${who} · ${l.stat}` : l.stat;
  };

  function traces(panel, data) {
    const grouped = Boolean(data.view && data.view.group);
    const groups = [...new Set(data.lines.map((l) => l.group))];
    const t = PD.dates(data.t);
    const several = data.stats.length > 1;
    return data.lines.map((l, i) => {
      const whole = l.group === "" && grouped;
      const color = whole ? "#7f8c8d" : PALETTE[(grouped ? groups.indexOf(l.group) : i) % PALETTE.length];
      const base = { name: lineName(l, grouped, several), x: t, y: l.values };
      // Stacks and bars are of the groups; "all" (their whole) stays a grey line on top.
      if (panel.chart === "bar" && !whole) return { ...base, type: "bar", marker: { color } };
      // Markers too: a group with a single step of data is a point, which a line alone hides.
      const trace = { ...base, type: "scatter", mode: "lines+markers", connectgaps: false, marker: { size: 4, color },
                      line: { color, width: whole ? 2.5 : 1.5, dash: whole ? "dot" : "solid" } };
      if (panel.chart === "area" && !whole) Object.assign(trace, { stackgroup: "groups", fillcolor: `${color}55` });
      return trace;
    });
  }

  function drawPanel(board, panel, i, boardAsOf) {
    const box = document.getElementById(`panel-${i}`).parentElement;
    const error = box.querySelector(".panel-error");
    const note = box.querySelector(".panel-note");
    const link = box.querySelector(".panel-explore");
    error.hidden = !panel.error;
    link.hidden = !panel.explore;
    if (panel.explore) link.href = panel.explore;
    if (panel.error) {
      error.textContent = `${panel.title}: this panel's query no longer works (${panel.error}): edit the board.`;
      document.getElementById(`panel-${i}`).hidden = true;
      return;
    }
    const data = panel.data;
    const unit = panel.units || data.units[data.stats[0]] || "";
    const what = (data.kind === "ratio" ? data.formula : `${data.title}: ${data.stats.join(" / ")}`)
      + `${data.view.group ? ` by ${data.view.group}` : ""}`;
    const title = `${PD.esc(panel.title)}<br><span style="font-size:11px;color:#667">`
      + `${PD.esc(what)} per ${PD.esc(data.step)}, last ${PD.esc(data.view.window)}</span>`;
    const empty = !data.rows.length;
    const lay = PD.layout(title, "time", PD.esc(unit), { margin: { l: 64, r: 16, t: 60, b: 52 } });
    Object.assign(lay.xaxis, { type: "date", range: PD.dates(data.range) });
    if (panel.chart === "bar") lay.barmode = "stack";
    if (data.view.ratio === "hit_rate") lay.yaxis.tickformat = ".0%";
    if (unit === "B" || unit === "bytes") lay.yaxis.tickformat = "~s";
    if (panel.target !== null && panel.target !== undefined) {
      const target = PD.hline(panel.target, `target ${panel.target} ${PD.esc(unit)}`);
      lay.shapes = target.shapes;
      lay.annotations = target.annotations;
    }
    if (empty) {
      lay.annotations = [...(lay.annotations || []), { xref: "paper", yref: "paper", x: 0.5, y: 0.5,
        showarrow: false, text: "no data in this window", font: { size: 16, color: "#667" } }];
    }
    note.textContent = empty ? "no data in this window" : data.rows.filter((r) => r.all)
      .map((r) => `over the window: ${data.stats.map((s) => `${s} ${r.shown[s]}`).join(", ")}`).join("");
    // Long panels are computed ahead or shared between viewers: say how old this one is, by the
    // server's clock (the browser's may be off).
    const age = Math.round(boardAsOf - data.as_of);
    if (age >= 5) note.textContent += ` · computed ${age} s ago`;
    PD.draw(`panel-${i}`, empty ? [] : traces(panel, data), lay);
  }

  function render(data) {
    if (data.error) {
      document.getElementById("panels").textContent = data.error;
      return;
    }
    // What fills the board, said once above the panels while none of them has data.
    const hint = document.getElementById("board-empty");
    const quiet = data.panels.every((p) => p.data && !p.data.rows.length);
    hint.hidden = !(quiet && data.panels.length && data.board.empty_hint);
    hint.textContent = data.board.empty_hint;
    const chosen = data.window ? `every panel over the last ${data.window}` : "each panel over its own window";
    document.getElementById("subtitle").textContent = `${data.panels.length} panels · ${chosen}`;
    boxes(data.panels);
    data.panels.forEach((panel, i) => drawPanel(data.board, panel, i, data.as_of));
    if (!data.panels.length) document.getElementById("panels").textContent = "This board has no panels yet.";
    document.body.dataset.rendered = String(Date.now());
  }

  PD.start(`board/${slug}`, render);
})();
