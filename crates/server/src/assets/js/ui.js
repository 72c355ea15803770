// Small DOM and formatting helpers shared by the views.

/** Creates an element: attributes (on* are listeners, `class`, `text`) and children. */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) e.append(c);
  return e;
}

/** The vital signs a tile shows, in bedside order. */
export const VITALS = [
  ["heart_rate", "HR"], ["respiratory_rate", "RR"], ["spo2", "SpO₂"],
  ["body_temperature", "Temp"], ["systolic_bp", "BP"],
];

export const VITAL_NAMES = {
  heart_rate: "Heart rate", respiratory_rate: "Respiratory rate", spo2: "SpO₂",
  body_temperature: "Body temperature", systolic_bp: "Systolic BP", diastolic_bp: "Diastolic BP",
  mean_bp: "Mean BP", body_weight: "Body weight", blood_glucose: "Blood glucose",
  oxygen_flow: "Oxygen", consciousness: "Consciousness",
};

export function fmtValue(key, v) {
  if (v === undefined || v === null || Number.isNaN(v)) return "–";
  if (key === "body_temperature" || key === "body_weight") return v.toFixed(1);
  if (key === "blood_glucose") return Math.round(v).toString();
  if (key === "consciousness") return "ACVPU"[Math.round(v)] ?? "?";
  return Math.round(v).toString();
}

/** UCUM units as people read them. */
export function fmtUnit(ucum) {
  return { "mm[Hg]": "mmHg", Cel: "°C", "/min": "/min" }[ucum] ?? ucum ?? "";
}

export function riskClass(news2) { return news2 ? "risk-" + news2.risk : "risk-none"; }

/** "7", or "≥ 7" for an incomplete set (a lower bound), or "–". */
export function news2Score(news2) {
  if (!news2) return "–";
  return news2.complete ? String(news2.score) : `≥ ${news2.score}`;
}

/** One line per NEWS2 component (score, value, age) and what is missing, for a title. */
export function news2Title(news2, now = Date.now()) {
  if (!news2) return "NEWS2: no fresh reading";
  const name = k => VITAL_NAMES[k] || k;
  const lines = news2.components.map(c => `${name(c.vital)} ${fmtValue(c.vital, c.value)}: ${c.score} (${age(c.time_ms, now)} ago)`);
  for (const k of news2.missing) lines.push(`${name(k)}: missing`);
  for (const k of news2.stale) lines.push(`${name(k)}: too old`);
  if (news2.assumed_air) lines.push("Oxygen: no reading, air assumed");
  if (news2.assumed_alert) lines.push("Consciousness: not recorded, alert assumed");
  const head = news2.complete ? `NEWS2 ${news2.score}` : `NEWS2 at least ${news2.score} (at most ${news2.score_max})`;
  return [head, ...lines].join("\n");
}

export const PRIORITY_RANK = { high: 3, medium: 2, low: 1 };

/** Alarms most urgent first: priority, then a NEWS2 aggregate before other
 *  alarms of its priority (RCP NEWS2 Chart 2 ranks an aggregate of 5-6 above
 *  a single red parameter), then newest. */
export function alarmOrder(a, b) {
  return (PRIORITY_RANK[b.priority] || 0) - (PRIORITY_RANK[a.priority] || 0)
    || (b.rule === "news2-aggregate") - (a.rule === "news2-aggregate")
    || b.raised_ms - a.raised_ms;
}

/** "12 s", "5 min", "3 h", "2 d" since `ms`. */
export function age(ms, now = Date.now()) {
  if (!ms) return "never";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d`;
}

export function time(ms) { return ms ? new Date(ms).toLocaleString() : "–"; }

/** Newest reading time of a patient summary's `latest`. */
export function lastReading(p) {
  let newest = 0;
  for (const o of Object.values(p.latest || {})) newest = Math.max(newest, o.time_ms);
  return newest;
}

/** A short-lived message in the corner (results of actions, errors). */
export function toast(text, kind = "info") {
  let box = document.getElementById("toasts");
  if (!box) { box = el("div", { id: "toasts", "aria-live": "polite" }); document.body.append(box); }
  const t = el("div", { class: "toast toast-" + kind, text });
  box.append(t);
  setTimeout(() => t.remove(), kind === "error" ? 8000 : 4000);
}

/** Runs an async action from a button, disabling it meanwhile; errors become toasts. */
export async function busy(button, action) {
  if (button) button.disabled = true;
  try { return await action(); } catch (e) { toast(e.message, "error"); } finally { if (button) button.disabled = false; }
}

export function table(headers, rows, attrs = {}) {
  return el("table", attrs,
    el("thead", {}, el("tr", {}, ...headers.map(h => el("th", { text: h })))),
    el("tbody", {}, ...rows));
}

export function emptyState(text) { return el("p", { class: "empty", text }); }

/** A device's connection and battery cells (td.status, td.battery), kept current by updateDevices. */
export function deviceCells(d) {
  const status = el("td");
  const battery = el("td");
  setStatus(status, d.online);
  setBattery(battery, d.battery_percent);
  return [status, battery];
}

function setStatus(td, online) {
  td.className = "status " + (online ? "online" : "muted");
  td.textContent = online == null ? "–" : online ? "on line" : "off line";
}

function setBattery(td, percent) {
  td.className = "battery num";
  td.textContent = percent == null ? "–" : `${Math.round(percent)} %`;
}

/**
 * Applies live device events (device_status, device_battery) to the rows
 * tr[data-device] under root; answers whether an event named a device
 * without a row.
 */
export function updateDevices(root, events) {
  let unknown = false;
  for (const ev of events) {
    const row = root.querySelector(`tr[data-device="${CSS.escape(ev.device_id)}"]`);
    if (!row) { unknown = true; continue; }
    if (ev.type === "device_battery") { setBattery(row.querySelector("td.battery"), ev.percent); continue; }
    setStatus(row.querySelector("td.status"), ev.online);
    const seen = row.querySelector("td.seen");
    if (seen) { seen.textContent = "just now"; seen.title = time(Date.now()); }
  }
  return unknown;
}
