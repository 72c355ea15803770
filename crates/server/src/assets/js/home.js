// Home monitoring: the patients monitored at home (no bed: the model's
// mark of a home patient), the one who needs attention first at the top:
// the highest priority of their active alarms, then NEWS2, then how many
// alarms, then the longest without a reading (missed readings).

import { el, age, time, lastReading, riskClass, news2Score, news2Title, table, emptyState, PRIORITY_RANK, VITALS, fmtValue } from "./ui.js";
import { ward, subscribe, alarmsOf } from "./live.js";

/** What decides a patient's place in the list. */
export function attention(p, now) {
  const alarms = alarmsOf(p.id);
  const worst = alarms.reduce((m, a) => Math.max(m, PRIORITY_RANK[a.priority] || 0), 0);
  const last = lastReading(p);
  return { worst, count: alarms.length, silentMs: last ? now - last : Infinity, news2: p.news2 ? p.news2.score : -1, alarms, last };
}

export function compare(a, b) {
  return b.worst - a.worst || b.news2 - a.news2 || b.count - a.count
    || (b.silentMs === a.silentMs ? 0 : b.silentMs > a.silentMs ? 1 : -1);
}

/** A patient monitored at home: `Patient.bed` is empty for them (model). */
export function atHome(p) { return !p.bed; }

export function mount(root) {
  const filter = el("input", { type: "search", placeholder: "Filter by name or ward", "aria-label": "Filter" });
  const body = el("div", { id: "home-list" });
  root.append(el("div", { class: "toolbar" }, el("h2", { text: "Home monitoring" }),
    el("span", { class: "muted", text: "Patients at home, sorted by need: highest alarm, then NEWS2, then number of alarms, then time since the last reading." }), filter), body);

  function render() {
    const now = Date.now();
    const needle = filter.value.trim().toLowerCase();
    const list = [...ward.patients.values()]
      .filter(atHome)
      .filter(p => !needle || p.name.toLowerCase().includes(needle) || (p.ward || "").toLowerCase().includes(needle))
      .map(p => ({ p, k: attention(p, now) }))
      .sort((x, y) => compare(x.k, y.k));
    if (!list.length) { body.replaceChildren(emptyState("No patients monitored at home (a patient without a bed).")); return; }
    const rows = list.map(({ p, k }) => el("tr", { "data-patient": p.id, class: ["", "prio-low", "prio-medium", "prio-high"][k.worst] },
      el("td", {}, el("a", { href: `#/patients/${encodeURIComponent(p.id)}`, text: p.name })),
      el("td", { text: p.ward || "" }),
      el("td", {}, ...(k.alarms.length ? k.alarms.map(a => el("span", { class: `chip prio-${a.priority}`, text: `${a.priority}: ${a.message}` })) : ["–"])),
      el("td", { class: k.last ? "" : "muted", title: time(k.last), text: k.last ? age(k.last, now) + " ago" : "no reading yet" }),
      el("td", {}, el("span", { class: "news2 " + riskClass(p.news2), text: news2Score(p.news2), title: news2Title(p.news2) })),
      el("td", { class: "muted", text: VITALS.filter(([key]) => p.latest[key]).map(([key, label]) => `${label} ${fmtValue(key, p.latest[key].value)}${key === "systolic_bp" && p.latest.diastolic_bp ? "/" + fmtValue(key, p.latest.diastolic_bp.value) : ""}`).join(" · ") })));
    body.replaceChildren(table(["Patient", "Ward / programme", "Active alarms", "Last reading", "NEWS2", "Latest"], rows, { class: "grid home" }));
  }

  // A list re-sorted on every reading would jump under the reader's eyes and
  // cost a full rebuild per frame: readings (and ages) every 2 s, alarm
  // changes at once.
  filter.oninput = render;
  render();
  const unsubscribe = subscribe(change => { if (change.reloaded || change.alarms.length) render(); });
  const tick = setInterval(render, 2000);
  return () => { unsubscribe(); clearInterval(tick); };
}
