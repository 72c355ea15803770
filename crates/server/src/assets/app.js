// medmesh central station: the ward grid, kept live by server-sent events.
"use strict";

const VITALS = [
  ["heart_rate", "HR"], ["respiratory_rate", "RR"], ["spo2", "SpO₂"],
  ["body_temperature", "Temp"], ["systolic_bp", "BP"],
];
const patients = new Map(); // id -> summary from the API, kept current by events
const alarms = new Map();   // alarm id -> alarm

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

function fmt(key, v) {
  if (v === undefined) return "–";
  return key === "body_temperature" ? v.toFixed(1) : Math.round(v).toString();
}

function riskClass(news2) { return news2 ? "risk-" + news2.risk : ""; }

function renderTile(p) {
  const tile = el("article", { class: "tile", "data-patient": p.id });
  const badge = el("span", { class: "news2" });
  tile.append(el("h2", {}, el("span", {}, p.name, " ", el("span", { class: "bed" }, p.bed ? "· bed " + p.bed : "")), badge));
  const grid = el("div", { class: "vitals" });
  for (const [key, label] of VITALS) {
    const cell = el("div", { class: "vital", "data-key": key },
      el("span", { class: "label" }, label), el("span", { class: "value" }, "–"), " ", el("span", { class: "unit" }, ""));
    grid.append(cell);
  }
  tile.append(grid, el("div", { class: "seen" }, ""));
  updateTile(tile, p, []);
  return tile;
}

function updateTile(tile, p, changedKeys) {
  const badge = tile.querySelector(".news2");
  badge.className = "news2 " + riskClass(p.news2);
  badge.textContent = p.news2 ? "NEWS2 " + p.news2.score : "NEWS2 –";
  tile.className = "tile " + riskClass(p.news2);
  const alarmingKeys = new Set([...alarms.values()].filter(a => a.patient_id === p.id && a.vital).map(a => a.vital));
  if (alarmingKeys.size) tile.classList.add("alarming");
  let newest = 0;
  for (const [key] of VITALS) {
    const cell = tile.querySelector(`[data-key="${key}"]`);
    const o = p.latest[key];
    let text = fmt(key, o && o.value);
    if (key === "systolic_bp" && p.latest.diastolic_bp) text += "/" + fmt(key, p.latest.diastolic_bp.value);
    cell.querySelector(".value").textContent = text;
    cell.querySelector(".unit").textContent = o ? o.unit.replace("mm[Hg]", "mmHg").replace("Cel", "°C") : "";
    cell.classList.toggle("alarm", alarmingKeys.has(key));
    if (o) newest = Math.max(newest, o.time_ms);
    if (changedKeys.includes(key)) { cell.classList.remove("flash"); void cell.offsetWidth; cell.classList.add("flash"); }
  }
  tile.querySelector(".seen").textContent = newest ? "updated " + new Date(newest).toLocaleTimeString() : "no readings yet";
}

function renderAlarms() {
  const box = document.getElementById("alarms");
  box.replaceChildren(...[...alarms.values()].sort((a, b) => b.raised_ms - a.raised_ms).map(a => {
    const p = patients.get(a.patient_id);
    const row = el("div", { class: "alarm alarm-" + a.state, "data-alarm": a.id },
      `${a.priority.toUpperCase()} · ${p ? p.name : a.patient_id}${p && p.bed ? " (bed " + p.bed + ")" : ""}: ${a.message}`);
    if (a.escalation_level > 0) row.append(el("span", { class: "escalated" }, ` · escalated to level ${a.escalation_level}`));
    if (a.state === "acknowledged" && a.acknowledged) {
      row.append(el("span", { class: "ack-by" }, ` · acknowledged by ${a.acknowledged.by}`));
    } else {
      const button = el("button", { class: "ack", type: "button" }, "Acknowledge");
      button.onclick = () => act(a.id, "acknowledge");
      row.append(" ", button);
    }
    return row;
  }));
  for (const p of patients.values()) {
    const tile = document.querySelector(`[data-patient="${CSS.escape(p.id)}"]`);
    if (tile) updateTile(tile, p, []);
  }
}

// The server records the signed-in user as the one who acted.
async function act(id, action) {
  await fetch(`/api/v1/alarms/${id}/${action}`, {
    method: "POST", headers: { "content-type": "application/json" }, body: "{}",
  });
}

function renderSummary() {
  document.getElementById("summary").textContent =
    `${patients.size} patients · ${alarms.size} active alarm${alarms.size === 1 ? "" : "s"}`;
}

async function load() {
  const res = await fetch("/api/v1/patients");
  if (res.status === 401) { showSignIn(); return; }
  const list = await res.json();
  patients.clear(); alarms.clear();
  for (const p of list) { patients.set(p.id, p); for (const a of p.alarms) alarms.set(a.id, a); }
  const ward = document.getElementById("ward");
  ward.replaceChildren(...list.map(renderTile));
  document.getElementById("empty").hidden = list.length > 0;
  renderAlarms(); renderSummary();
}

function onObservations(ev) {
  if (!ev.patient_id) return;
  const p = patients.get(ev.patient_id);
  if (!p) { load(); return; } // a patient admitted since the page loaded
  for (const o of ev.observations) {
    const old = p.latest[o.key];
    if (!old || old.time_ms <= o.time_ms) p.latest[o.key] = o;
  }
  p.news2 = ev.news2;
  const tile = document.querySelector(`[data-patient="${CSS.escape(p.id)}"]`);
  if (tile) updateTile(tile, p, ev.observations.map(o => o.key));
}

function onAlarm(ev) {
  if (ev.change === "resolved") alarms.delete(ev.alarm.id); else alarms.set(ev.alarm.id, ev.alarm);
  renderAlarms(); renderSummary();
}

let stream = null;
function connect() {
  const conn = document.getElementById("conn");
  if (stream) stream.close();
  const es = stream = new EventSource("/api/v1/stream");
  es.onopen = () => { conn.textContent = "live"; conn.className = "conn conn-up"; load(); };
  es.onerror = () => {
    conn.textContent = "reconnecting…"; conn.className = "conn conn-down";
    // A session that ended (signed out elsewhere, expired) shows the sign-in form.
    fetch("/api/v1/me").then(r => { if (r.status === 401) showSignIn(); });
  };
  es.addEventListener("observations", e => onObservations(JSON.parse(e.data)));
  es.addEventListener("alarm", e => onAlarm(JSON.parse(e.data)));
  es.addEventListener("resync", () => load());
}

function showSignIn() {
  if (stream) { stream.close(); stream = null; }
  document.getElementById("station").hidden = true;
  document.getElementById("user").hidden = true;
  document.getElementById("sign-in").hidden = false;
}

async function start() {
  const me = await fetch("/api/v1/me");
  if (me.status === 401) { showSignIn(); return; }
  const who = await me.json();
  document.getElementById("user-name").textContent = `${who.username} (${who.role})`;
  document.getElementById("user").hidden = false;
  document.getElementById("sign-in").hidden = true;
  document.getElementById("station").hidden = false;
  await load();
  connect();
}

document.getElementById("sign-in").addEventListener("submit", async e => {
  e.preventDefault();
  const form = new FormData(e.target);
  const res = await fetch("/api/v1/login", {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: form.get("username"), password: form.get("password") }),
  });
  const error = document.getElementById("sign-in-error");
  if (res.ok) { error.textContent = ""; e.target.reset(); start(); return; }
  const body = await res.json().catch(() => ({}));
  error.textContent = body.error ? body.error.reason : `sign-in failed (${res.status})`;
});

document.getElementById("sign-out").addEventListener("click", async () => {
  await fetch("/api/v1/logout", { method: "POST" });
  showSignIn();
});

start().catch(() => showSignIn());
