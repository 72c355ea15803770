// Alarm load: what an alarm committee reviews (GET /api/v1/reports/alarm-load),
// per ward and rule over the last 24 hours, 7 or 30 days: alarms per
// patient-day, the share cleared within 60 s with nobody acting, the median
// time to acknowledge, escalations, the patients and conditions with the
// most alarms. The server decides which wards the reader gets and whom it
// names; a patient it does not name is shown as a count only.

import { api, enc } from "./api.js";
import { el, table, emptyState, VITAL_NAMES } from "./ui.js";

const PERIODS = [["24 h", 86_400_000], ["7 days", 7 * 86_400_000], ["30 days", 30 * 86_400_000]];

const RULE_NAMES = {
  "news2-single-parameter-3": "NEWS2 single parameter (3)",
  "news2-aggregate": "NEWS2 aggregate",
  threshold: "Limit",
  "rate-of-change": "Rate of change",
  "stale-data": "No readings",
  "battery-low": "Battery low",
  fall: "Fall",
  "device-offline": "Device off line",
};

// The period chosen last, kept while the page lives.
let chosen = PERIODS[0][0];

/** "45 s", "3 min 20 s", "2 h 5 min"; "–" for none. */
export function duration(ms) {
  if (ms === null || ms === undefined) return "–";
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** A share as a percentage, "–" for none. */
export function percent(share) {
  return share === null || share === undefined ? "–" : `${Math.round(share * 100)} %`;
}

function rate(r) {
  return r === null || r === undefined ? "–" : r.toFixed(r < 10 ? 2 : 1);
}

/** "3 (2 alarms; level 1: 2, level 2: 1)", or "0". */
export function escalations(e) {
  if (!e.count) return "0";
  const levels = Object.entries(e.reached).map(([level, n]) => `level ${level}: ${n}`).join(", ");
  return `${e.count} (${e.alarms} alarm${e.alarms === 1 ? "" : "s"}; ${levels})`;
}

function figureCells(f) {
  return [
    el("td", { class: "num alarms", text: String(f.alarms) }),
    el("td", { class: "num", text: rate(f.per_patient_day) }),
    el("td", { class: "num", text: `${f.cleared_unattended_60s} (${percent(f.cleared_unattended_60s_share)})` }),
    el("td", { class: "num", text: String(f.acknowledged) }),
    el("td", { class: "num", text: duration(f.median_ack_ms) }),
    el("td", { text: escalations(f.escalations) }),
    el("td", { class: "num", text: String(f.still_open) }),
  ];
}

function wardSection(w, ctx) {
  const rows = w.rules.map(r => el("tr", { "data-rule": r.rule },
    el("td", { title: r.rule, text: RULE_NAMES[r.rule] || r.rule }), ...figureCells(r)));
  rows.push(el("tr", { class: "total", "data-rule": "" }, el("td", { text: "All alarms" }), ...figureCells(w.total)));
  const patients = w.top_patients.map(t => el("li", {},
    t.patient_id
      ? (ctx.can.ward ? el("a", { href: `#/patients/${enc(t.patient_id)}`, text: t.name }) : t.name)
      : el("span", { class: "muted", text: "a patient" }),
    ` · ${t.alarms}`));
  const conditions = w.top_conditions.map(c => el("li", {},
    `${RULE_NAMES[c.rule] || c.rule}${c.vital ? " · " + (VITAL_NAMES[c.vital] || c.vital) : ""} · ${c.alarms}`));
  const days = w.patient_days;
  return el("section", { class: "load-ward", "data-ward": w.ward },
    el("h3", {}, w.ward || "(no ward)",
      el("span", { class: "muted", text: ` · ${days < 10 ? days.toFixed(2) : days.toFixed(1)} patient-days · ${w.patients} patient${w.patients === 1 ? "" : "s"} with a device` +
        (w.patients_without_device_time ? ` · ${w.patients_without_device_time} with alarms and no device (not in patient-days)` : "") })),
    table(["Rule", "Alarms", "Per patient-day", "Cleared ≤ 60 s, nobody acting", "Acknowledged", "Median to acknowledge", "Escalations", "Still open"], rows, { class: "grid load" }),
    el("div", { class: "load-tops" },
      el("div", {}, el("h4", { text: "Most alarms: patients" }), patients.length ? el("ol", {}, ...patients) : emptyState("None.")),
      el("div", {}, el("h4", { text: "Most alarms: conditions" }), conditions.length ? el("ol", {}, ...conditions) : emptyState("None."))));
}

export function mount(root, ctx) {
  const buttons = PERIODS.map(([label]) => el("button", { type: "button", "data-period": label, text: label }));
  const everyWard = ctx.me.role === "admin" || ctx.me.role === "operations";
  const wardSelect = el("select", { "aria-label": "Ward" }, el("option", { value: "", text: everyWard ? "All wards" : "All my wards" }));
  // The view's state (loading, ready, error) and the period shown, on its
  // own element: the root outlives the view.
  const body = el("div", { id: "alarm-load" });
  root.append(el("div", { class: "toolbar" }, el("h2", { text: "Alarm load" }),
    el("div", { class: "ranges" }, ...buttons), wardSelect,
    el("span", { class: "muted", text: "Alarms count in the period they were raised in. Patient-days: each patient's time with a device assigned." })), body);
  const known = new Set();
  let asked = 0;

  async function load() {
    const mine = ++asked;
    for (const b of buttons) b.classList.toggle("on", b.dataset.period === chosen);
    const span = PERIODS.find(([label]) => label === chosen)[1];
    const until = Date.now();
    const since = until - span;
    body.dataset.state = "loading";
    const ward = wardSelect.value;
    let report;
    try {
      report = await api(`/api/v1/reports/alarm-load?since_ms=${since}&until_ms=${until}${ward ? "&ward=" + enc(ward) : ""}`);
    } catch (e) {
      if (mine !== asked) return;
      body.replaceChildren(emptyState(e.message));
      body.dataset.state = "error";
      return;
    }
    if (mine !== asked) return;
    for (const w of report.wards) {
      if (known.has(w.ward)) continue;
      known.add(w.ward);
      wardSelect.append(el("option", { value: w.ward, text: w.ward || "(no ward)" }));
    }
    body.replaceChildren(...(report.wards.length
      ? report.wards.map(w => wardSection(w, ctx))
      : [emptyState("No alarms and no patients with a device in this period.")]));
    Object.assign(body.dataset, { since: String(since), until: String(until), period: chosen, state: "ready" });
  }

  for (const b of buttons) b.onclick = () => { chosen = b.dataset.period; load(); };
  wardSelect.onchange = load;
  load();
  return () => { asked++; };
}
