// Alarm console: every active alarm the caller may see, most urgent first,
// with acknowledge and snooze; live, and ages kept ticking. #/alarms/{id}
// (the link in alarm e-mails) marks that alarm and scrolls to it.

import { el, age, time, busy, table, emptyState, PRIORITY_RANK } from "./ui.js";
import { ward, subscribe, actOnAlarm } from "./live.js";
import { api } from "./api.js";

export function mount(root, ctx, arg) {
  const linked = arg ? Number(arg) : null;
  let scrolled = false;
  const body = el("div", { id: "alarm-console" });
  const historyBox = el("div", { class: "history" });
  const showHistory = el("button", { type: "button", text: "Show recently resolved" });
  root.append(el("div", { class: "toolbar" }, el("h2", { text: "Alarm console" }), showHistory), body, historyBox);

  function patientLabel(id) {
    const p = ward.patients.get(id);
    return el("a", { href: `#/patients/${encodeURIComponent(id)}`, text: p ? `${p.name}${p.bed ? " · bed " + p.bed : ""}` : id });
  }

  function stateText(a) {
    const now = Date.now();
    if (a.snoozed_until_ms && a.snoozed_until_ms > now) return `snoozed until ${new Date(a.snoozed_until_ms).toLocaleTimeString()}`;
    if (a.state === "acknowledged" && a.acknowledged) return `acknowledged by ${a.acknowledged.by}`;
    return a.state;
  }

  function render() {
    const list = [...ward.alarms.values()].sort((a, b) =>
      (PRIORITY_RANK[b.priority] || 0) - (PRIORITY_RANK[a.priority] || 0)
      || (a.state === "active" ? 0 : 1) - (b.state === "active" ? 0 : 1)
      // RCP NEWS2 Chart 2: an aggregate of 5-6 before a single red parameter.
      || (b.rule === "news2-aggregate") - (a.rule === "news2-aggregate")
      || a.raised_ms - b.raised_ms);
    const note = linked && ward.loaded && !ward.alarms.has(linked)
      ? el("p", { class: "empty linked-gone", text: `Alarm ${linked} is no longer active: it was resolved (see recently resolved).` })
      : "";
    if (!list.length) { body.replaceChildren(note, emptyState("No active alarms.")); return; }
    const now = Date.now();
    const rows = list.map(a => {
      const actions = el("td", { class: "actions" });
      if (ctx.can.actOnAlarms) {
        if (a.state === "active") {
          const ack = el("button", { type: "button", class: "ack", text: "Acknowledge" });
          ack.onclick = () => busy(ack, () => actOnAlarm(a.id, "acknowledge"));
          actions.append(ack, " ");
        }
        const minutes = el("input", { type: "number", min: "1", max: "1440", value: "10", class: "minutes", "aria-label": "Snooze minutes" });
        const snooze = el("button", { type: "button", class: "snooze", text: "Snooze" });
        snooze.onclick = () => busy(snooze, () => actOnAlarm(a.id, "snooze", { minutes: Number(minutes.value) }));
        actions.append(minutes, " min ", snooze);
      }
      return el("tr", { class: `prio-${a.priority} state-${a.state}${a.id === linked ? " linked" : ""}`, "data-alarm": a.id },
        el("td", {}, el("span", { class: "prio", text: a.priority.toUpperCase() })),
        el("td", {}, patientLabel(a.patient_id)),
        el("td", { text: a.message }),
        el("td", { class: "age", title: time(a.raised_ms), text: age(a.raised_ms, now) }),
        el("td", { class: "state", text: stateText(a) }),
        el("td", { class: "escalation", text: a.escalation_level ?? "–" }),
        actions);
    });
    body.replaceChildren(note, table(["Priority", "Patient", "Alarm", "Age", "State", "Escalation", ""], rows, { class: "grid alarms" }));
    const row = linked && !scrolled && body.querySelector(`tr[data-alarm="${linked}"]`);
    if (row) { row.scrollIntoView({ block: "center" }); scrolled = true; }
  }

  showHistory.onclick = () => busy(showHistory, async () => {
    const resolved = await api("/api/v1/alarms?state=resolved");
    resolved.sort((a, b) => b.updated_ms - a.updated_ms);
    historyBox.replaceChildren(el("h3", { text: "Recently resolved" }), resolved.length
      ? table(["Priority", "Patient", "Alarm", "Raised", "Resolved", "By"], resolved.slice(0, 200).map(a => el("tr", {},
        el("td", { text: a.priority }), el("td", {}, patientLabel(a.patient_id)), el("td", { text: a.message }),
        el("td", { text: time(a.raised_ms) }), el("td", { text: time(a.resolved && a.resolved.at_ms) }),
        el("td", { text: a.resolved ? a.resolved.by : "" }))), { class: "grid" })
      : emptyState("Nothing resolved recently."));
  });

  render();
  const unsubscribe = subscribe(change => { if (change.reloaded || change.alarms.length) render(); });
  const tick = setInterval(render, 10000); // ages
  return () => { unsubscribe(); clearInterval(tick); };
}
