// Patient view (#/patients/{id}): trend charts over 1 hour to 90 days,
// observations table, alarms, devices, care plan, and (for the care team's
// nurses and physicians) a form to chart a set of observations by hand. Charts are uPlot
// (vendored); ranges past a few hours use the API's bucket roll-ups
// (min/max/mean per bucket) instead of every point.

import { el, age, time, fmtValue, fmtUnit, riskClass, news2Score, news2Title, VITAL_NAMES, busy, table, emptyState, toast, deviceCells, updateDevices } from "./ui.js";
import { api, enc } from "./api.js";
import { ward, subscribe, alarmsOf, actOnAlarm } from "./live.js";
import { chartForm, news2Badge } from "./chart.js";

/** Range label, length, bucket width (null: every point). About 700 points a chart at most. */
export const RANGES = [
  ["1 h", 3600e3, null],
  ["6 h", 6 * 3600e3, "30s"],
  ["24 h", 24 * 3600e3, "2m"],
  ["7 days", 7 * 86400e3, "15m"],
  ["30 days", 30 * 86400e3, "1h"],
  ["90 days", 90 * 86400e3, "3h"],
];

/** Vital signs drawn together on one chart. */
const GROUPS = [
  ["heart_rate"], ["respiratory_rate"], ["spo2"], ["body_temperature"],
  ["systolic_bp", "diastolic_bp", "mean_bp"], ["blood_glucose"], ["body_weight"],
];
const COLOURS = ["#4fc3f7", "#ffb74d", "#aed581", "#f06292"];

/**
 * Fixed y-axis range per chart (its first vital's canonical unit), so that a
 * glance at a chart's height means the same for every patient and a flat
 * line is not stretched into a crisis. Wide enough for the clinical range
 * (NEWS2's chart rows and beyond); a reading outside widens the axis, never
 * hides it. Weight has no fixed range (it is the patient's own).
 */
export const Y_RANGES = {
  heart_rate: [30, 180], respiratory_rate: [0, 40], spo2: [80, 100], body_temperature: [34, 41],
  systolic_bp: [40, 220], blood_glucose: [40, 400],
};
const LIMIT_COLOUR = "#ff8a80";

/**
 * Range picker, one chart per vital-sign group and the observations table,
 * for patient `id`; kept live on the 1-hour range. Answers a cleanup function.
 */
export function trends(root, id, opts = {}) {
  const picker = el("div", { class: "ranges", role: "group", "aria-label": "Time range" });
  const charts = el("div", { class: "charts" });
  const obsTable = el("div", { class: "obs-table" });
  root.append(picker, charts, el("h3", { text: "Observations" }), obsTable);
  let plots = [];
  let current = 0;
  let raw = null; // key -> [[t, v]] on the live range
  let request = 0;
  // The patient's alarm limits (their profile and overrides), drawn on the
  // charts; only for callers who may read alarm settings.
  const limitsReady = opts.limits
    ? api(`/api/v1/patients/${enc(id)}/alarm-settings`).then(r => (r.effective && r.effective.thresholds) || {}).catch(() => ({}))
    : Promise.resolve({});

  for (const [i, [label]] of RANGES.entries()) {
    const b = el("button", { type: "button", "data-range": label, text: label });
    b.onclick = () => { current = i; load(); };
    picker.append(b);
  }

  function destroy() { for (const p of plots) p.plot.destroy(); plots = []; }

  async function load() {
    for (const [i, b] of [...picker.children].entries()) b.classList.toggle("on", i === current);
    const [, length, bucket] = RANGES[current];
    const to = Date.now();
    const mine = ++request;
    charts.dataset.state = "loading";
    let res;
    try {
      res = await api(`/api/v1/patients/${enc(id)}/observations?from=${Math.round(to - length)}&to=${to}${bucket ? "&bucket=" + bucket : ""}`);
    } catch (e) {
      charts.replaceChildren(emptyState(e.message));
      return;
    }
    const limits = await limitsReady;
    if (mine !== request) return; // a newer choice won
    destroy();
    charts.replaceChildren();
    const byKey = new Map(res.series.map(s => [s.key, s]));
    raw = bucket ? null : new Map(res.series.map(s => [s.key, s.points.slice()]));
    for (const group of GROUPS) {
      const present = group.filter(k => byKey.has(k));
      if (!present.length) continue;
      const box = el("figure", { class: "chart", "data-key": present[0] },
        el("figcaption", { text: present.map(k => byKey.get(k).display).join(" / ") + ` (${fmtUnit(byKey.get(present[0]).unit)})` }));
      charts.append(box);
      const lim = limits[present[0]] || {};
      const lines = [lim.low, lim.high].filter(v => typeof v === "number");
      box.dataset.limits = lines.join(",");
      const range = Y_RANGES[present[0]];
      if (range) box.dataset.range = range.join(",");
      plots.push({ group: present, box, plot: makePlot(box, present.map(k => byKey.get(k)), !!bucket, res.from_ms, res.to_ms, range, lines) });
    }
    if (!plots.length) charts.append(emptyState(`No readings in the last ${RANGES[current][0]}.`));
    charts.dataset.state = "ready";
    renderTable(res.series, !!bucket);
  }

  function makePlot(box, series, bucketed, from, to, range, lines) {
    const width = Math.max(300, (charts.clientWidth || 900) - 8);
    const columns = [];
    const specs = [{}];
    series.forEach((s, i) => {
      const colour = COLOURS[i % COLOURS.length];
      if (bucketed) {
        const b = s.buckets;
        columns.push([b.map(x => x.start_ms / 1000), b.map(x => x.mean), b.map(x => x.min), b.map(x => x.max)]);
        specs.push({ label: `${label(s.key)} mean`, stroke: colour, width: 2, spanGaps: false },
          { label: "min", stroke: colour + "66", width: 1, dash: [4, 4] },
          { label: "max", stroke: colour + "66", width: 1, dash: [4, 4] });
      } else {
        columns.push([s.points.map(p => p[0] / 1000), s.points.map(p => p[1])]);
        specs.push({ label: label(s.key), stroke: colour, width: 2, points: { show: s.points.length < 60 } });
      }
    });
    const data = columns.length === 1 ? columns[0] : uPlot.join(columns);
    box.dataset.points = String(data[0].length);
    // The fixed range, widened to any reading (or limit) outside it.
    const y = range ? { range: (u, min, max) => [Math.min(range[0], min ?? range[0], ...lines), Math.max(range[1], max ?? range[1], ...lines)] } : {};
    const opts = {
      width, height: 180, series: specs,
      scales: { x: { time: true, min: from / 1000, max: to / 1000 }, y },
      axes: [{ stroke: "#8b98a5", grid: { stroke: "#26313c" } }, { stroke: "#8b98a5", grid: { stroke: "#26313c" } }],
      legend: { live: true },
      hooks: { draw: [u => drawLimits(u, lines)] },
    };
    return new uPlot(opts, data, box);
  }

  /** The alarm limits as dashed horizontal lines across the plot. */
  function drawLimits(u, lines) {
    if (!lines.length) return;
    const { ctx } = u;
    const { left, top, width, height } = u.bbox;
    ctx.save();
    ctx.strokeStyle = LIMIT_COLOUR;
    ctx.fillStyle = LIMIT_COLOUR;
    ctx.lineWidth = Math.max(1, devicePixelRatio);
    ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
    ctx.font = `${11 * devicePixelRatio}px system-ui, sans-serif`;
    for (const v of lines) {
      const py = Math.round(u.valToPos(v, "y", true));
      if (py < top || py > top + height) continue;
      ctx.beginPath();
      ctx.moveTo(left, py);
      ctx.lineTo(left + width, py);
      ctx.stroke();
      ctx.textAlign = "right"; // at the right end, clear of the axis labels
      ctx.fillText(`limit ${v}`, left + width - 4 * devicePixelRatio, py - 3 * devicePixelRatio);
    }
    ctx.restore();
  }

  function label(key) { return VITAL_NAMES[key] || key; }

  function renderTable(series, bucketed) {
    let rows;
    if (bucketed) {
      const all = series.flatMap(s => s.buckets.map(b => ({ s, b }))).sort((x, y) => y.b.start_ms - x.b.start_ms).slice(0, 200);
      rows = all.map(({ s, b }) => el("tr", {}, el("td", { text: time(b.start_ms) }), el("td", { text: label(s.key) }),
        el("td", { text: `${fmtValue(s.key, b.mean)} (${fmtValue(s.key, b.min)}–${fmtValue(s.key, b.max)})` }),
        el("td", { text: fmtUnit(s.unit) }), el("td", { text: String(b.count) })));
      obsTable.replaceChildren(rows.length ? table(["Bucket from", "Vital sign", "Mean (min–max)", "Unit", "Readings"], rows, { class: "grid" }) : emptyState("No observations in this range."));
    } else {
      const all = series.flatMap(s => s.points.map(p => ({ s, p }))).sort((x, y) => y.p[0] - x.p[0]).slice(0, 200);
      rows = all.map(({ s, p }) => el("tr", {}, el("td", { text: time(p[0]) }), el("td", { text: label(s.key) }),
        el("td", { class: "num", text: fmtValue(s.key, p[1]) }), el("td", { text: fmtUnit(s.unit) }), el("td", { class: "muted", text: s.code })));
      obsTable.replaceChildren(rows.length ? table(["Time", "Vital sign", "Value", "Unit", "LOINC"], rows, { class: "grid" }) : emptyState("No observations in this range."));
    }
    obsTable.dataset.rows = String(rows.length);
  }

  // Live on the 1-hour range: new readings join the charts once a frame.
  const unsubscribe = subscribe(change => {
    const keys = change.patients.get(id);
    const p = ward.patients.get(id);
    if (!keys || !keys.size || !p || !raw || RANGES[current][2]) return;
    let grew = false;
    for (const key of keys) {
      const o = p.latest[key];
      const pts = raw.get(key) || [];
      if (!raw.has(key)) raw.set(key, pts);
      if (o && (!pts.length || pts[pts.length - 1][0] < o.time_ms)) { pts.push([o.time_ms, o.value]); grew = true; }
    }
    if (!grew) return;
    const missing = [...keys].some(k => !plots.some(pl => pl.group.includes(k)));
    if (missing) { load(); return; } // a vital sign with no chart yet
    const now = Date.now();
    for (const pl of plots) {
      if (!pl.group.some(k => keys.has(k))) continue;
      const cols = pl.group.map(k => { const pts = raw.get(k) || []; return [pts.map(q => q[0] / 1000), pts.map(q => q[1])]; });
      const data = cols.length === 1 ? cols[0] : uPlot.join(cols);
      pl.box.dataset.points = String(data[0].length);
      pl.plot.setScale("x", { min: (now - 3600e3) / 1000, max: now / 1000 });
      pl.plot.setData(data, false);
    }
  });

  // uPlot is a classic script loaded with `defer`; modules run after it.
  load();
  return () => { unsubscribe(); destroy(); };
}

export function mount(root, ctx, id) {
  const head = el("div", { class: "patient-head" });
  const trendBox = el("section", { class: "trends", "aria-label": "Trends" });
  const alarmsBox = el("section", { class: "patient-alarms" });
  const devicesBox = el("section", { class: "patient-devices" });
  const carePlan = el("section", { class: "care-plan" }, el("h3", { text: "Care plan" }),
    emptyState("No care plan. medmesh does not keep care plans yet; nothing is shown rather than something made up."));
  const chartBox = el("section", { class: "patient-chart" });
  if (ctx.can.chart) {
    chartBox.append(el("h3", {}, "Chart observations ", el("a", { href: `#/chart/${enc(id)}`, class: "small", text: "bedside view" })));
    chartForm(chartBox, id, {
      onSaved: answer => {
        const lastNews2 = chartBox.querySelector(".chart-news2");
        const badge = el("p", { class: "chart-news2" }, "NEWS2 after this set: ", news2Badge(answer.news2));
        if (lastNews2) lastNews2.replaceWith(badge); else chartBox.append(badge);
        toast(answer.news2 ? `Saved: NEWS2 ${news2Score(answer.news2)} (${answer.news2.risk})` : "Saved", "info");
      },
    });
  }
  root.append(head, el("div", { class: "patient-layout" },
    el("div", { class: "main-col" }, el("h3", { text: "Trends" }), trendBox),
    el("aside", { class: "side-col" }, chartBox, alarmsBox, devicesBox, carePlan)));

  let summary = null;
  function renderHead() {
    const p = ward.patients.get(id) || summary;
    if (!p) return;
    head.replaceChildren(el("a", { href: "#/station", class: "back", text: "← Central station" }),
      el("h2", {}, p.name, " ", el("span", { class: "muted", text: [p.ward, p.bed && "bed " + p.bed, p.id].filter(Boolean).join(" · ") })),
      el("span", { class: "news2 big " + riskClass(p.news2), title: news2Title(p.news2),
        text: p.news2 ? `NEWS2 ${news2Score(p.news2)} (${p.news2.risk})` : "NEWS2 –" }));
  }

  let history = [];
  function renderAlarms() {
    const active = ward.loaded ? alarmsOf(id) : (summary ? summary.alarms : []);
    const rows = active.map(a => {
      const row = el("li", { class: `prio-${a.priority} state-${a.state}`, "data-alarm": a.id },
        el("span", { class: "prio", text: a.priority.toUpperCase() }), ` ${a.message} · ${age(a.raised_ms)} · ${a.state}`);
      if (a.state === "active" && ctx.can.actOnAlarms) {
        const b = el("button", { type: "button", class: "ack", text: "Acknowledge" });
        b.onclick = () => busy(b, () => actOnAlarm(a.id, "acknowledge"));
        row.append(" ", b);
      }
      return row;
    });
    alarmsBox.replaceChildren(el("h3", { text: "Alarms" }),
      rows.length ? el("ul", { class: "alarm-list" }, ...rows) : emptyState("No active alarms."),
      history.length ? el("details", {}, el("summary", { text: `Resolved (${history.length})` }),
        el("ul", { class: "alarm-list" }, ...history.map(a => el("li", { class: "muted", text: `${a.priority}: ${a.message}, ${time(a.raised_ms)} – ${time(a.resolved && a.resolved.at_ms)}${a.resolved ? " by " + a.resolved.by : ""}` })))) : "");
  }

  async function loadDevices() {
    devicesBox.replaceChildren(el("h3", { text: "Devices" }));
    if (!ctx.can.devices) { devicesBox.append(emptyState("Device details are for the care team.")); return; }
    try {
      const devices = (await api("/api/v1/devices")).filter(d => d.patient_id === id);
      devicesBox.append(devices.length ? table(["Device", "Status", "Battery", "Last seen", "Assigned since"], devices.map(d => {
        const since = d.assignments.filter(a => a.patient_id === id).map(a => a.from_ms).pop();
        return el("tr", { "data-device": d.id }, el("td", { text: d.id }),
          ...deviceCells(d),
          el("td", { class: "seen", text: d.last_seen_ms ? age(d.last_seen_ms) + " ago" : "never" }),
          el("td", { text: since ? time(since) : "–" }));
      }), { class: "grid" }) : emptyState("No device assigned."));
    } catch (e) { devicesBox.append(emptyState(e.message)); }
  }

  (async () => {
    try { summary = await api(`/api/v1/patients/${enc(id)}`); } catch (e) { head.replaceChildren(emptyState(e.message)); toast(e.message, "error"); return; }
    renderHead();
    renderAlarms();
    api(`/api/v1/alarms?state=resolved&patient=${encodeURIComponent(id)}&limit=200`).then(list => { history = list; renderAlarms(); }).catch(() => {});
  })();
  const stopTrends = trends(trendBox, id, { limits: true });
  loadDevices();
  const unsubscribe = subscribe(change => {
    if (change.reloaded || change.patients.has(id)) { renderHead(); renderAlarms(); }
    // Connection and battery of this patient's devices, live.
    if (change.devices.length) updateDevices(devicesBox, change.devices);
  });
  return () => { unsubscribe(); stopTrends(); };
}
