// Central station: one fixed-size tile per patient, sized so that 24 beds
// fit a 1920x1080 screen without scrolling. A tile shows the full name and
// bed, the vital signs with oxygen (L/min or air) and ACVPU, each with its
// NEWS2 points and the age of its reading, the NEWS2 badge, the patient's
// most urgent alarm (Acknowledge) and how many they have; the full list
// lives in the alarm console. Tiles are built once and then only their
// changed cells are touched, once per animation frame; ages tick every 5 s.

import { el, fmtValue, fmtUnit, riskClass, news2Score, news2Title, lastReading, busy, emptyState, age } from "./ui.js";
import { ward, subscribe, alarmsOf, actOnAlarm } from "./live.js";

const FLASH = [{ backgroundColor: "#2c3e50" }, { backgroundColor: "#111820" }];

/** The cells of a tile, in bedside order: key, label. */
export const TILE_CELLS = [
  ["heart_rate", "HR"], ["respiratory_rate", "RR"], ["spo2", "SpO₂"], ["body_temperature", "Temp"],
  ["systolic_bp", "BP"], ["oxygen_flow", "O₂"], ["consciousness", "ACVPU"],
];

/** What a cell shows: text, unit, and whether NEWS2 assumed it (no reading). */
export function cellText(p, key) {
  const o = p.latest[key];
  if (key === "oxygen_flow") {
    // NEWS2 scores "air" without an oxygen reading, and so does a flow of 0.
    if (!o || !(o.value > 0)) return { text: "air", unit: "", assumed: !o };
    return { text: fmtValue(key, o.value), unit: "L/min", assumed: false };
  }
  if (key === "consciousness") {
    if (!o) return { text: "A", unit: "", assumed: true };
    return { text: fmtValue(key, o.value), unit: "", assumed: false };
  }
  let text = fmtValue(key, o && o.value);
  if (key === "systolic_bp" && p.latest.diastolic_bp) text += "/" + fmtValue(key, p.latest.diastolic_bp.value);
  return { text, unit: o ? fmtUnit(o.unit) : "", assumed: false };
}

export function mount(root, ctx) {
  const tiles = new Map(); // patient id -> refs
  const wards = () => [...new Set([...ward.patients.values()].map(p => p.ward || "(no ward)"))].sort();
  const filter = el("select", { id: "ward-filter", "aria-label": "Ward" });
  const grid = el("section", { id: "ward", "aria-label": "Patients" });
  const empty = emptyState("No patients to show. Admit one with POST /api/v1/patients, or start medmesh demo.");
  empty.hidden = true;
  root.append(el("div", { class: "toolbar station-bar" }, el("h2", { text: "Central station" }), el("label", {}, "Ward ", filter),
    el("span", { class: "muted", text: "Each vital: NEWS2 points · age of the reading. Full alarm list: " }, el("a", { href: "#/alarms", text: "Alarms" }))), grid, empty);
  let selected = localStorage.getItem("medmesh.ward") || "";

  function fillFilter() {
    const options = [el("option", { value: "", text: "All wards" }), ...wards().map(w => el("option", { value: w, text: w }))];
    filter.replaceChildren(...options);
    if (![...filter.options].some(o => o.value === selected)) selected = "";
    filter.value = selected;
  }
  filter.onchange = () => { selected = filter.value; localStorage.setItem("medmesh.ward", selected); build(); };

  function shown(p) { return !selected || (p.ward || "(no ward)") === selected; }

  function build() {
    tiles.clear();
    const list = [...ward.patients.values()].filter(shown)
      .sort((a, b) => (a.ward || "").localeCompare(b.ward || "") || a.bed.localeCompare(b.bed, undefined, { numeric: true }) || a.name.localeCompare(b.name));
    const frag = document.createDocumentFragment();
    for (const p of list) {
      const t = makeTile(p);
      tiles.set(p.id, t);
      frag.append(t.root);
    }
    grid.replaceChildren(frag);
    empty.hidden = list.length > 0;
    root.dataset.tiles = String(list.length);
    performance.mark("medmesh:station-built");
  }

  function makeTile(p) {
    const badge = el("span", { class: "news2" });
    const cells = {};
    const vitals = el("div", { class: "vitals" });
    for (const [key, label] of TILE_CELLS) {
      const value = el("span", { class: "value", text: "–" });
      const unit = el("span", { class: "unit" });
      const when = el("span", { class: "when" });
      const cell = el("div", { class: "vital", "data-key": key }, el("span", { class: "label", text: label }), value, " ", unit, when);
      cells[key] = { cell, value, unit, when };
      vitals.append(cell);
    }
    const alarmBox = el("div", { class: "tile-alarms" });
    const seen = el("div", { class: "seen" });
    const place = p.bed ? "Bed " + p.bed : (p.ward || "");
    const root = el("article", { class: "tile", "data-patient": p.id },
      // The name has the tile's whole width to itself.
      el("h3", {}, el("a", { href: `#/patients/${encodeURIComponent(p.id)}`, class: "name", text: p.name, title: p.name })),
      el("div", { class: "tile-sub" }, el("span", { class: "bed", text: place }), badge),
      vitals, alarmBox, seen);
    const t = { root, badge, cells, alarmBox, seen };
    update(t, p, null);
    return t;
  }

  /** Each cell's NEWS2 points and the age of its reading (from the aggregate's components). */
  function renderAges(t, p, now = Date.now()) {
    const components = new Map((p.news2 ? p.news2.components : []).map(c => [c.vital, c]));
    for (const [key] of TILE_CELLS) {
      const c = t.cells[key];
      const comp = components.get(key);
      const o = p.latest[key];
      let text = "";
      if (comp) text = `${comp.score} · ${age(comp.time_ms, now)}`;
      else if (o) text = age(o.time_ms, now); // read but not counted (too old, or not a NEWS2 parameter)
      if (c.when.textContent !== text) c.when.textContent = text;
      const score = comp ? comp.score : 0;
      if (c.cell.dataset.score !== String(score)) c.cell.dataset.score = String(score);
    }
    t.badge.title = news2Title(p.news2, now);
  }

  function update(t, p, changedKeys) {
    t.badge.className = "news2 " + riskClass(p.news2);
    t.badge.textContent = "NEWS2 " + news2Score(p.news2);
    const alarms = alarmsOf(p.id);
    const alarmingKeys = new Set(alarms.filter(a => a.vital).map(a => a.vital));
    const high = alarms.some(a => a.priority === "high" && a.state === "active");
    t.root.className = `tile ${riskClass(p.news2)}${alarms.length ? " alarming" : ""}${high ? " alarm-high" : ""}`;
    for (const [key] of TILE_CELLS) {
      const c = t.cells[key];
      c.cell.classList.toggle("alarm", alarmingKeys.has(key));
      const changed = !changedKeys || changedKeys.has(key) || (key === "systolic_bp" && changedKeys.has("diastolic_bp"));
      if (!changed) continue;
      const { text, unit, assumed } = cellText(p, key);
      if (c.value.textContent !== text) c.value.textContent = text;
      c.unit.textContent = unit;
      c.cell.classList.toggle("assumed", assumed);
      c.cell.title = assumed ? (key === "oxygen_flow" ? "No oxygen reading: NEWS2 scores air" : "Not recorded: NEWS2 assumes alert") : "";
      // Web Animations: no forced layout, unlike restarting a CSS animation.
      if (changedKeys && changedKeys.size) c.cell.animate(FLASH, 600);
    }
    renderAges(t, p);
    renderAlarm(t, alarms);
    const newest = lastReading(p);
    t.seen.textContent = newest ? "updated " + new Date(newest).toLocaleTimeString() : "no readings yet";
  }

  // The most urgent alarm, and how many there are; the console has them all.
  function renderAlarm(t, alarms) {
    const top = alarms[0];
    const sig = top ? `${top.id}:${top.state}:${top.priority}:${top.message}:${alarms.length}` : "";
    if (t.alarmBox.dataset.sig === sig) return;
    t.alarmBox.dataset.sig = sig;
    t.alarmBox.dataset.count = String(alarms.length);
    if (!top) { t.alarmBox.replaceChildren(); return; }
    const count = el("a", { class: "alarm-count", href: "#/alarms", title: "All alarms in the alarm console",
      text: alarms.length === 1 ? "1 alarm" : `${alarms.length} alarms` });
    const foot = el("div", { class: "tile-alarm-foot" }, count);
    if (top.state === "active" && ctx.can.actOnAlarms) {
      const b = el("button", { type: "button", class: "ack", text: "Acknowledge" });
      b.onclick = () => busy(b, () => actOnAlarm(top.id, "acknowledge"));
      foot.append(b);
    } else if (top.acknowledged) {
      foot.append(el("span", { class: "ack-by", text: `✓ ${top.acknowledged.by}` }));
    }
    // The button sits in the alarm's own box: it acknowledges that alarm.
    const row = el("div", { class: `tile-alarm prio-${top.priority} state-${top.state}`, "data-alarm": top.id, title: top.message },
      el("div", { class: "msg" }, el("span", { class: "prio", text: top.priority.toUpperCase() }), " ", top.message), foot);
    t.alarmBox.replaceChildren(row);
  }

  fillFilter();
  build();
  const unsubscribe = subscribe(change => {
    if (change.reloaded) { fillFilter(); build(); return; }
    for (const [id, changedKeys] of change.patients) {
      const t = tiles.get(id);
      const p = ward.patients.get(id);
      if (t && p) update(t, p, changedKeys);
    }
  });
  // Ages grow between readings (a cuff's blood pressure is minutes old).
  const tick = setInterval(() => {
    const now = Date.now();
    for (const [id, t] of tiles) { const p = ward.patients.get(id); if (p) renderAges(t, p, now); }
  }, 5000);
  return () => { unsubscribe(); clearInterval(tick); };
}
