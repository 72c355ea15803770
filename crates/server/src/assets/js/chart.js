// Charting observations by hand: the NEWS2 set a nurse takes at the bedside
// (respiration, SpO2, air or oxygen, blood pressure, pulse, temperature,
// ACVPU), sent to POST /api/v1/patients/{id}/observation-sets, which
// validates, stores, scores and audits it. `chartForm` is the form (on the
// patient page and the bedside view); `mount` is the bedside tablet view
// #/chart/{patient}: large inputs, one patient, the NEWS2 after saving.

import { el, riskClass, news2Score, news2Title, toast, emptyState } from "./ui.js";
import { api, enc } from "./api.js";
import { ward, subscribe } from "./live.js";

/** Number fields: key, label, unit shown, step, plausible range for the keypad. */
const FIELDS = [
  ["respiratory_rate", "Respiration rate", "/min", "1", 0, 150],
  ["spo2", "SpO₂", "%", "1", 1, 100],
  ["systolic_bp", "Systolic BP", "mmHg", "1", 0, 400],
  ["diastolic_bp", "Diastolic BP", "mmHg", "1", 0, 300],
  ["heart_rate", "Pulse", "/min", "1", 0, 350],
  ["body_temperature", "Temperature", "°C", "0.1", 10, 50],
];

const ACVPU = [["A", "Alert"], ["C", "New confusion"], ["V", "Voice"], ["P", "Pain"], ["U", "Unresponsive"]];

/** "2026-12-01T08:05" in local time, for a datetime-local input. */
function localInput(ms) {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60e3);
  return d.toISOString().slice(0, 16);
}

/**
 * The charting form for patient `id` under `root`; `onSaved(answer)` gets
 * the API's answer (what was stored and the NEWS2 after it). `big` lays it
 * out for a tablet.
 */
export function chartForm(root, id, { big = false, onSaved = () => {} } = {}) {
  const inputs = new Map();
  const rows = FIELDS.map(([key, label, unit, step, min, max]) => {
    const input = el("input", { type: "number", inputmode: "decimal", step, min, max, name: key, "aria-label": label });
    inputs.set(key, input);
    return el("label", { class: "field" }, el("span", { text: label }), el("span", { class: "with-unit" }, input, el("span", { class: "unit", text: unit })));
  });
  const oxygenFlow = el("input", { type: "number", inputmode: "decimal", step: "0.5", min: "0.5", max: "80", name: "oxygen_flow", "aria-label": "Oxygen flow", disabled: true });
  const air = el("input", { type: "radio", name: `oxygen-${id}`, value: "air" });
  const oxygen = el("input", { type: "radio", name: `oxygen-${id}`, value: "oxygen" });
  for (const r of [air, oxygen]) r.onchange = () => { oxygenFlow.disabled = !oxygen.checked; if (oxygen.checked) oxygenFlow.focus(); };
  const oxygenRow = el("fieldset", { class: "field choice" }, el("legend", { text: "Air or oxygen?" }),
    el("label", {}, air, " Air"), el("label", {}, oxygen, " Oxygen"),
    el("span", { class: "with-unit" }, oxygenFlow, el("span", { class: "unit", text: "L/min" })));
  const acvpu = ACVPU.map(([letter, label]) => el("input", { type: "radio", name: `acvpu-${id}`, value: letter, "aria-label": label }));
  const acvpuRow = el("fieldset", { class: "field choice acvpu" }, el("legend", { text: "Consciousness (ACVPU)" }),
    ...acvpu.map((r, i) => el("label", { title: ACVPU[i][1] }, r, ` ${ACVPU[i][0]}`, el("span", { class: "muted", text: ` ${ACVPU[i][1]}` }))));
  const taken = el("input", { type: "datetime-local", name: "taken", value: localInput(Date.now()), "aria-label": "Taken at" });
  // Left alone, the set is taken now (to the millisecond, by the server);
  // the field's minutes would date it up to a minute early.
  let takenChanged = false;
  taken.oninput = () => { takenChanged = true; };
  const takenRow = el("label", { class: "field" }, el("span", { text: "Taken at" }), taken);
  const save = el("button", { type: "submit", class: "primary", text: "Save observations" });
  const message = el("p", { class: "chart-message", role: "status" });
  const form = el("form", { class: "chart-form" + (big ? " big" : ""), "data-patient": id, novalidate: true },
    el("div", { class: "chart-fields" }, ...rows, oxygenRow, acvpuRow, takenRow), el("div", { class: "chart-actions" }, save, message));
  root.append(form);

  form.onsubmit = async e => {
    e.preventDefault();
    const body = {};
    for (const [key, input] of inputs) if (input.value.trim() !== "") body[key] = Number(input.value);
    if (air.checked) body.oxygen_flow = 0;
    if (oxygen.checked) {
      if (oxygenFlow.value.trim() === "") { message.className = "chart-message error"; message.textContent = "Give the oxygen flow in L/min, or choose Air."; return; }
      body.oxygen_flow = Number(oxygenFlow.value);
    }
    const level = acvpu.find(r => r.checked);
    if (level) body.consciousness = level.value;
    const when = takenChanged && taken.value ? new Date(taken.value).getTime() : NaN;
    if (!Number.isNaN(when)) body.taken = when;
    save.disabled = true;
    message.className = "chart-message";
    message.textContent = "Saving…";
    try {
      const answer = await api(`/api/v1/patients/${enc(id)}/observation-sets`, { method: "POST", body });
      message.className = "chart-message ok";
      message.textContent = `Saved ${answer.accepted} observation${answer.accepted === 1 ? "" : "s"} for ${new Date(answer.taken_ms).toLocaleString()}.`;
      form.dataset.saved = String(answer.accepted);
      for (const input of inputs.values()) input.value = "";
      for (const r of [air, oxygen, ...acvpu]) r.checked = false;
      oxygenFlow.value = ""; oxygenFlow.disabled = true;
      taken.value = localInput(Date.now());
      takenChanged = false;
      onSaved(answer);
    } catch (err) {
      message.className = "chart-message error";
      message.textContent = err.message;
      form.dataset.saved = "0";
    } finally {
      save.disabled = false;
    }
  };
  return form;
}

/** The NEWS2 an answer (or a patient summary) carries, as a large badge. */
export function news2Badge(news2) {
  return el("span", { class: "news2 big " + riskClass(news2), title: news2Title(news2), "data-score": news2 ? String(news2.score) : "",
    text: news2 ? `NEWS2 ${news2Score(news2)} (${news2.risk})` : "NEWS2 –" });
}

/** Bedside tablet view: one patient, the form, the NEWS2 after saving. */
export function mount(root, ctx, id) {
  if (!id) { root.append(emptyState("Open a patient's bedside charting from their page, or go to #/chart/{patient id}.")); return () => {}; }
  const head = el("div", { class: "patient-head" });
  const result = el("div", { class: "chart-result", "aria-live": "polite" });
  const body = el("section", { class: "chart-view" });
  root.append(head, body, result);
  let summary = null;
  function renderHead() {
    const p = ward.patients.get(id) || summary;
    if (!p) return;
    head.replaceChildren(el("a", { href: `#/patients/${enc(id)}`, class: "back", text: "← Patient" }),
      el("h2", {}, p.name, " ", el("span", { class: "muted", text: [p.ward, p.bed && "bed " + p.bed, p.id].filter(Boolean).join(" · ") })),
      news2Badge(p.news2));
  }
  (async () => {
    try { summary = await api(`/api/v1/patients/${enc(id)}`); } catch (e) { head.replaceChildren(emptyState(e.message)); toast(e.message, "error"); return; }
    renderHead();
  })();
  chartForm(body, id, {
    big: true,
    onSaved: answer => {
      result.replaceChildren(el("h3", { text: "NEWS2 after this set" }), news2Badge(answer.news2),
        answer.news2 && !answer.news2.complete ? el("p", { class: "muted", text: "Incomplete set: the score is a lower bound." }) : "");
      if (summary) summary.news2 = answer.news2;
      renderHead();
    },
  });
  const unsubscribe = subscribe(change => { if (change.reloaded || change.patients.has(id)) renderHead(); });
  return unsubscribe;
}
