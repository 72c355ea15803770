// Central station: one tile per patient of the ward, live vitals, NEWS2
// colour band, active alarms with Acknowledge. Tiles are built once and
// then only their changed cells are touched, once per animation frame.

import { el, VITALS, fmtValue, fmtUnit, riskClass, news2Score, news2Title, lastReading, busy, emptyState } from "./ui.js";
import { ward, subscribe, alarmsOf, actOnAlarm } from "./live.js";

const FLASH = [{ backgroundColor: "#2c3e50" }, { backgroundColor: "#111820" }];

export function mount(root, ctx) {
  const tiles = new Map(); // patient id -> refs
  const wards = () => [...new Set([...ward.patients.values()].map(p => p.ward || "(no ward)"))].sort();
  const filter = el("select", { id: "ward-filter", "aria-label": "Ward" });
  const grid = el("section", { id: "ward", "aria-label": "Patients" });
  const empty = emptyState("No patients to show. Admit one with POST /api/v1/patients, or start medmesh demo.");
  empty.hidden = true;
  root.append(el("div", { class: "toolbar" }, el("h2", { text: "Central station" }), el("label", {}, "Ward ", filter)), grid, empty);
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
    for (const [key, label] of VITALS) {
      const value = el("span", { class: "value", text: "–" });
      const unit = el("span", { class: "unit" });
      const cell = el("div", { class: "vital", "data-key": key }, el("span", { class: "label", text: label }), value, " ", unit);
      cells[key] = { cell, value, unit };
      vitals.append(cell);
    }
    const alarmsBox = el("div", { class: "tile-alarms" });
    const seen = el("div", { class: "seen" });
    const root = el("article", { class: "tile", "data-patient": p.id },
      el("h3", {}, el("a", { href: `#/patients/${encodeURIComponent(p.id)}`, class: "name", text: p.name }),
        el("span", { class: "bed", text: p.bed ? "bed " + p.bed : "" }), badge),
      vitals, alarmsBox, seen);
    const t = { root, badge, cells, alarmsBox, seen };
    update(t, p, null);
    return t;
  }

  function update(t, p, changedKeys) {
    t.badge.className = "news2 " + riskClass(p.news2);
    t.badge.textContent = "NEWS2 " + news2Score(p.news2);
    // The components' ages, read when the pointer rests on the badge.
    t.badge.title = news2Title(p.news2);
    const alarms = alarmsOf(p.id);
    const alarmingKeys = new Set(alarms.filter(a => a.vital).map(a => a.vital));
    const high = alarms.some(a => a.priority === "high" && a.state === "active");
    t.root.className = `tile ${riskClass(p.news2)}${alarms.length ? " alarming" : ""}${high ? " alarm-high" : ""}`;
    for (const [key] of VITALS) {
      const c = t.cells[key];
      c.cell.classList.toggle("alarm", alarmingKeys.has(key));
      const changed = !changedKeys || changedKeys.has(key) || (key === "systolic_bp" && changedKeys.has("diastolic_bp"));
      if (!changed) continue;
      const o = p.latest[key];
      let text = fmtValue(key, o && o.value);
      if (key === "systolic_bp" && p.latest.diastolic_bp) text += "/" + fmtValue(key, p.latest.diastolic_bp.value);
      if (c.value.textContent !== text) c.value.textContent = text;
      c.unit.textContent = o ? fmtUnit(o.unit) : "";
      // Web Animations: no forced layout, unlike restarting a CSS animation.
      if (changedKeys && changedKeys.size) c.cell.animate(FLASH, 600);
    }
    renderAlarms(t, alarms);
    const newest = lastReading(p);
    t.seen.textContent = newest ? "updated " + new Date(newest).toLocaleTimeString() : "no readings yet";
  }

  function renderAlarms(t, alarms) {
    const sig = alarms.map(a => `${a.id}:${a.state}:${a.message}`).join("|");
    if (t.alarmsBox.dataset.sig === sig) return;
    t.alarmsBox.dataset.sig = sig;
    t.alarmsBox.replaceChildren(...alarms.map(a => {
      const row = el("div", { class: `tile-alarm prio-${a.priority} state-${a.state}`, "data-alarm": a.id },
        el("span", { class: "prio", text: a.priority.toUpperCase() }), " ", a.message);
      if (a.state === "active" && ctx.can.actOnAlarms) {
        const b = el("button", { type: "button", class: "ack", text: "Acknowledge" });
        b.onclick = () => busy(b, () => actOnAlarm(a.id, "acknowledge"));
        row.append(" ", b);
      } else if (a.acknowledged) {
        row.append(el("span", { class: "ack-by", text: ` ✓ ${a.acknowledged.by}` }));
      }
      return row;
    }));
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
  return () => unsubscribe();
}
