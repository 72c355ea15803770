// Portal for patients (own readings; who can see my data; grant and revoke
// consents) and for those a patient shared data with (caregivers, insurers,
// researchers: what each consent lets them see).

import { el, VITALS, fmtValue, fmtUnit, riskClass, news2Score, age, time, busy, table, emptyState, toast } from "./ui.js";
import { api, enc } from "./api.js";
import { ward, subscribe, alarmsOf } from "./live.js";
import { trends } from "./patient.js";

function latestCard(p) {
  const cells = VITALS.map(([key, label]) => {
    const o = p.latest[key];
    let text = fmtValue(key, o && o.value);
    if (key === "systolic_bp" && p.latest.diastolic_bp) text += "/" + fmtValue(key, p.latest.diastolic_bp.value);
    return el("div", { class: "vital", "data-key": key }, el("span", { class: "label", text: label }),
      el("span", { class: "value", text }), " ", el("span", { class: "unit", text: o ? fmtUnit(o.unit) : "" }),
      el("span", { class: "when muted", text: o ? age(o.time_ms) + " ago" : "" }));
  });
  return el("div", { class: "portal-latest" },
    el("span", { class: "news2 big " + riskClass(p.news2), text: `NEWS2 ${news2Score(p.news2)}` }),
    el("div", { class: "vitals wide" }, ...cells));
}

function reminders() {
  return el("section", {}, el("h3", { text: "Reminders" }),
    emptyState("No reminders. medmesh does not schedule measurement or medication reminders yet."));
}

export function mount(root, ctx) {
  return ctx.me.role === "patient" ? mountPatient(root, ctx) : mountGrantee(root, ctx);
}

function mountPatient(root, ctx) {
  const id = ctx.me.patient;
  if (!id) { root.append(emptyState("This account is not linked to a patient record.")); return () => {}; }
  const latest = el("section", { class: "portal-now" });
  const alarmsBox = el("section");
  const trendBox = el("section", { class: "trends" });
  const consentsBox = el("section", { id: "consents" });
  root.append(el("h2", { text: "My health" }), latest, alarmsBox,
    el("h3", { text: "My readings" }), trendBox, consentsBox, reminders());

  function renderNow() {
    const p = ward.patients.get(id);
    latest.replaceChildren(p ? latestCard(p) : emptyState("Loading…"));
    const alarms = alarmsOf(id);
    alarmsBox.replaceChildren(el("h3", { text: "Alerts" }), alarms.length
      ? el("ul", { class: "alarm-list" }, ...alarms.map(a => el("li", { class: `prio-${a.priority}`, text: `${a.message} (${age(a.raised_ms)} ago, ${a.state})` })))
      : emptyState("No alerts."));
  }

  async function loadConsents() {
    const grantee = el("input", { name: "grantee", required: true, placeholder: "their user name", "aria-label": "User name" });
    const purpose = el("input", { name: "purpose", required: true, placeholder: "e.g. family care", "aria-label": "Purpose" });
    const obs = el("input", { type: "checkbox", name: "observations", checked: true });
    const alarms = el("input", { type: "checkbox", name: "alarms" });
    const expires = el("input", { type: "date", name: "expires", "aria-label": "Until (optional)" });
    const submit = el("button", { type: "submit", text: "Grant access" });
    const form = el("form", { class: "grant" }, el("h4", { text: "Share my data" }),
      el("label", {}, "With ", grantee), el("label", {}, "Purpose ", purpose),
      el("label", {}, obs, " readings"), el("label", {}, alarms, " alerts"),
      el("label", {}, "Until ", expires), submit);
    form.onsubmit = e => {
      e.preventDefault();
      const scopes = [obs.checked && "observations", alarms.checked && "alarms"].filter(Boolean);
      if (!scopes.length) { toast("Choose readings, alerts or both.", "error"); return; }
      const body = { grantee: grantee.value.trim(), scopes, purpose: purpose.value.trim() };
      if (expires.value) body.expires_ms = new Date(expires.value + "T23:59:59").getTime();
      busy(submit, async () => {
        await api(`/api/v1/patients/${enc(id)}/consents`, { method: "POST", body });
        toast(`${body.grantee} can now see your ${scopes.join(" and ")}.`);
        loadConsents();
      });
    };
    let list;
    try { list = await api(`/api/v1/patients/${enc(id)}/consents`); } catch (e) { consentsBox.replaceChildren(emptyState(e.message)); return; }
    const now = Date.now();
    const inForce = c => !c.revoked_ms && !(c.expires_ms && c.expires_ms <= now);
    const rows = list.sort((a, b) => inForce(b) - inForce(a) || b.granted_ms - a.granted_ms).map(c => {
      const action = el("td");
      if (inForce(c)) {
        const b = el("button", { type: "button", class: "revoke", text: "Revoke" });
        b.onclick = () => busy(b, async () => { await api(`/api/v1/consents/${enc(c.id)}`, { method: "DELETE" }); toast(`Access of ${c.grantee} revoked.`); loadConsents(); });
        action.append(b);
      }
      return el("tr", { "data-consent": c.id, class: inForce(c) ? "" : "muted" },
        el("td", { text: c.grantee }), el("td", { text: c.scopes.join(", ") }), el("td", { text: c.purpose }),
        el("td", { text: time(c.granted_ms) }),
        el("td", { text: c.revoked_ms ? `revoked ${time(c.revoked_ms)}` : c.expires_ms ? (inForce(c) ? "until " : "expired ") + time(c.expires_ms) : "until revoked" }),
        action);
    });
    consentsBox.replaceChildren(el("h3", { text: "Who can see my data" }),
      el("p", { class: "muted", text: "Your care team (the clinicians of your ward) and the system administrators see your record. Anyone else only through a consent you give:" }),
      rows.length ? table(["Who", "Sees", "Purpose", "Granted", "Valid", ""], rows, { class: "grid consents" }) : emptyState("Nobody else: you have not shared your data."),
      form);
  }

  renderNow();
  const stopTrends = trends(trendBox, id);
  loadConsents();
  const unsubscribe = subscribe(change => { if (change.reloaded || change.patients.has(id)) renderNow(); });
  return () => { unsubscribe(); stopTrends(); };
}

function mountGrantee(root) {
  const list = el("section", { id: "shared" });
  const detail = el("section", { class: "trends" });
  root.append(el("h2", { text: "Shared with me" }), list, detail, reminders());
  let stopTrends = () => {};
  let consents = [];

  function render() {
    if (!consents.length) { list.replaceChildren(emptyState("Nobody has shared data with you (or what they shared has expired or was revoked).")); return; }
    list.replaceChildren(...consents.map(c => {
      const p = ward.patients.get(c.patient);
      const open = c.scopes.includes("observations")
        ? el("button", { type: "button", text: "Trends", onclick: () => { stopTrends(); detail.replaceChildren(el("h3", { text: `Readings of ${p ? p.name : c.patient}` })); stopTrends = trends(detail, c.patient); } })
        : "";
      const alarms = c.scopes.includes("alarms") ? alarmsOf(c.patient) : [];
      return el("article", { class: "shared-card", "data-patient": c.patient },
        el("h3", {}, p ? p.name : c.patient, " ", el("span", { class: "muted", text: `${c.purpose} · sees ${c.scopes.join(", ")}${c.expires_ms ? " · until " + time(c.expires_ms) : ""}` })),
        p && c.scopes.includes("observations") ? latestCard(p) : "",
        c.scopes.includes("alarms") ? (alarms.length ? el("ul", { class: "alarm-list" }, ...alarms.map(a => el("li", { class: `prio-${a.priority}`, text: a.message }))) : emptyState("No alerts.")) : "",
        open);
    }));
  }

  api("/api/v1/consents").then(c => { consents = c; render(); }).catch(e => list.replaceChildren(emptyState(e.message)));
  const unsubscribe = subscribe(change => { if (change.reloaded || consents.some(c => change.patients.has(c.patient))) render(); });
  return () => { unsubscribe(); stopTrends(); };
}
