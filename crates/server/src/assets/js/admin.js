// Administration: devices (provision credentials, revoke, assign to a
// patient), users, care teams, and the audit log viewer. Operations see the
// devices tab only; the server refuses the rest to them anyway.

import { el, age, time, busy, table, emptyState, toast, deviceCells, updateDevices } from "./ui.js";
import { api, enc } from "./api.js";
import { ward, subscribe } from "./live.js";

const TABS = [
  ["devices", "Devices", c => c.can.manageDevices],
  ["users", "Users", c => c.can.manageUsers],
  ["teams", "Care teams", c => c.can.manageUsers],
  ["audit", "Audit log", c => c.can.readAudit],
];

export function mount(root, ctx, tab) {
  const tabs = TABS.filter(([, , allowed]) => allowed(ctx));
  const current = tabs.find(([id]) => id === tab) ? tab : tabs[0][0];
  const body = el("section", { class: "admin-body", "data-tab": current });
  root.append(el("nav", { class: "tabs" }, ...tabs.map(([id, label]) =>
    el("a", { href: `#/admin/${id}`, class: id === current ? "on" : "", text: label }))), body);
  const cleanups = [];
  ({ devices, users, teams, audit })[current](body, ctx, cleanups);
  return () => { for (const stop of cleanups) stop(); };
}

/** Shows a secret once, with a copy button. */
function secretBox(title, lines) {
  return el("div", { class: "secret", role: "status" }, el("strong", { text: title }),
    ...lines.map(([k, v]) => el("div", {}, `${k}: `, el("code", { class: "secret-value", text: v }))),
    el("p", { class: "muted", text: "Shown this once: medmesh keeps only a hash." }));
}

async function devices(body, ctx, cleanups) {
  const notice = el("div");
  const newId = el("input", { placeholder: "device id, e.g. ward-a-bed-007", "aria-label": "New device id" });
  const provisionNew = el("button", { type: "button", text: "Provision credentials" });
  const listBox = el("div");
  const patients = el("datalist", { id: "patient-ids" }, ...[...ward.patients.values()].map(p => el("option", { value: p.id, text: p.name })));
  body.append(el("div", { class: "toolbar" }, el("h2", { text: "Devices" }), newId, provisionNew), notice, patients, listBox);

  const provision = (id, button) => busy(button, async () => {
    const c = await api(`/api/v1/devices/${enc(id)}/credentials`, { method: "POST" });
    notice.replaceChildren(secretBox(`Credentials for ${c.device_id}`, [["MQTT user name", c.username], ["password / token", c.password]]));
    load();
  });
  provisionNew.onclick = () => { if (newId.value.trim()) provision(newId.value.trim(), provisionNew); };

  async function load() {
    let list;
    try { list = await api("/api/v1/devices"); } catch (e) { listBox.replaceChildren(emptyState(e.message)); return; }
    if (!list.length) { listBox.replaceChildren(emptyState("No devices yet.")); return; }
    listBox.replaceChildren(table(["Device", "Patient", "Status", "Battery", "Last seen", "Messages", "Assign to patient", "Credentials"], list.map(d => {
      const input = el("input", { list: "patient-ids", value: d.patient_id || "", placeholder: "patient id", "aria-label": `Patient for ${d.id}`, size: "14" });
      const assign = el("button", { type: "button", class: "assign", text: "Assign" });
      assign.onclick = () => busy(assign, async () => {
        const pid = input.value.trim() || null;
        await api(`/api/v1/devices/${enc(d.id)}`, { method: "PUT", body: { patient_id: pid } });
        toast(pid ? `${d.id} now measures ${pid}.` : `${d.id} unassigned.`);
        load();
      });
      const issue = el("button", { type: "button", class: "provision", text: "New token" });
      issue.onclick = () => provision(d.id, issue);
      const revoke = el("button", { type: "button", class: "revoke", text: "Revoke" });
      revoke.onclick = () => busy(revoke, async () => {
        await api(`/api/v1/devices/${enc(d.id)}/credentials`, { method: "DELETE" });
        toast(`Credentials of ${d.id} revoked.`);
      });
      const p = d.patient_id && ward.patients.get(d.patient_id);
      return el("tr", { "data-device": d.id }, el("td", { text: d.id + (d.registered ? "" : " (unregistered)") }),
        el("td", { text: d.patient_id ? (p ? `${p.name} (${d.patient_id})` : d.patient_id) : "–" }),
        ...deviceCells(d),
        el("td", { class: "seen", title: time(d.last_seen_ms), text: d.last_seen_ms ? age(d.last_seen_ms) + " ago" : "never" }),
        el("td", { class: "num", text: String(d.messages) }),
        el("td", {}, input, " ", assign), el("td", {}, issue, " ", revoke));
    }), { class: "grid devices" }));
  }
  // Connection and battery live from the stream; a device not listed yet
  // (first heard from) brings a reload, at most every 2 s.
  let reload = null;
  cleanups.push(subscribe(change => {
    if (change.devices.length && updateDevices(listBox, change.devices) && !reload) {
      reload = setTimeout(() => { reload = null; load(); }, 2000);
    }
  }));
  cleanups.push(() => clearTimeout(reload));
  load();
}

const ROLES = ["admin", "physician", "nurse", "patient", "caregiver", "insurer", "researcher", "operations"];

async function users(body, ctx) {
  const notice = el("div");
  const listBox = el("div");
  const username = el("input", { required: true, placeholder: "user name", "aria-label": "User name" });
  const role = el("select", { "aria-label": "Role" }, ...ROLES.map(r => el("option", { value: r, text: r })));
  const patient = el("input", { placeholder: "patient id (patient role)", "aria-label": "Patient id" });
  const password = el("input", { type: "password", placeholder: "password (empty: generate)", "aria-label": "Password", autocomplete: "new-password" });
  const add = el("button", { type: "submit", text: "Add user" });
  const form = el("form", { class: "inline-form" }, username, role, patient, password, add);
  body.append(el("h2", { text: "Users" }), form, notice, listBox);
  form.onsubmit = e => {
    e.preventDefault();
    const b = { username: username.value.trim(), role: role.value };
    if (patient.value.trim()) b.patient = patient.value.trim();
    if (password.value) b.password = password.value;
    busy(add, async () => {
      const u = await api("/api/v1/users", { method: "POST", body: b });
      notice.replaceChildren(u.password ? secretBox(`Account ${u.username} created`, [["password", u.password]]) : el("p", { text: `Account ${u.username} created.` }));
      form.reset();
      load();
    });
  };
  async function load() {
    const list = await api("/api/v1/users");
    listBox.replaceChildren(table(["User", "Role", "Patient", "Created", "State", ""], list.map(u => {
      const action = el("td");
      if (!u.disabled && u.username !== ctx.me.username) {
        const b = el("button", { type: "button", text: "Disable" });
        b.onclick = () => busy(b, async () => {
          if (!confirm(`Disable ${u.username}? Their sessions end and API tokens are revoked.`)) return;
          await api(`/api/v1/users/${enc(u.username)}`, { method: "DELETE" });
          load();
        });
        action.append(b);
      }
      return el("tr", { "data-user": u.username, class: u.disabled ? "muted" : "" }, el("td", { text: u.username }), el("td", { text: u.role }),
        el("td", { text: u.patient || "" }), el("td", { text: time(u.created_ms) }), el("td", { text: u.disabled ? "disabled" : "active" }), action);
    }), { class: "grid" }));
  }
  load().catch(e => listBox.replaceChildren(emptyState(e.message)));
}

const split = s => s.split(",").map(x => x.trim()).filter(Boolean);

async function teams(body) {
  const listBox = el("div");
  const id = el("input", { required: true, placeholder: "team id", "aria-label": "Team id" });
  const name = el("input", { placeholder: "name", "aria-label": "Team name" });
  const members = el("input", { placeholder: "members (user names, comma-separated)", "aria-label": "Members", size: "30" });
  const wards = el("input", { placeholder: "wards (comma-separated)", "aria-label": "Wards" });
  const patients = el("input", { placeholder: "patient ids (comma-separated)", "aria-label": "Patients" });
  const save = el("button", { type: "submit", text: "Save team" });
  const form = el("form", { class: "inline-form" }, id, name, members, wards, patients, save);
  body.append(el("h2", { text: "Care teams" }), el("p", { class: "muted", text: "A team's members care for every patient of its wards and the patients named. Saving replaces the team." }), form, listBox);
  form.onsubmit = e => {
    e.preventDefault();
    busy(save, async () => {
      await api(`/api/v1/teams/${enc(id.value.trim())}`, { method: "PUT", body: { name: name.value.trim(), members: split(members.value), wards: split(wards.value), patients: split(patients.value) } });
      toast(`Team ${id.value.trim()} saved.`);
      form.reset();
      load();
    });
  };
  async function load() {
    const list = await api("/api/v1/teams");
    listBox.replaceChildren(list.length ? table(["Team", "Name", "Members", "Wards", "Patients", ""], list.map(t => el("tr", { "data-team": t.id },
      el("td", { text: t.id }), el("td", { text: t.name }), el("td", { text: t.members.join(", ") }), el("td", { text: t.wards.join(", ") }),
      el("td", { text: t.patients.join(", ") }),
      el("td", {}, el("button", { type: "button", text: "Edit", onclick: () => { id.value = t.id; name.value = t.name; members.value = t.members.join(", "); wards.value = t.wards.join(", "); patients.value = t.patients.join(", "); } })))), { class: "grid" }) : emptyState("No care teams yet."));
  }
  load().catch(e => listBox.replaceChildren(emptyState(e.message)));
}

async function audit(body) {
  const actor = el("input", { placeholder: "actor", "aria-label": "Actor" });
  const patient = el("input", { placeholder: "patient id", "aria-label": "Patient" });
  const action = el("input", { placeholder: "action (exact)", "aria-label": "Action" });
  const outcome = el("select", { "aria-label": "Outcome" },
    ...[["", "any outcome"], ["denied", "refusals"], ["allowed", "allowed"], ["failed", "failed"]].map(([v, t]) => el("option", { value: v, text: t })));
  const since = el("input", { type: "datetime-local", "aria-label": "Since" });
  const until = el("input", { type: "datetime-local", "aria-label": "Until" });
  const limit = el("input", { type: "number", value: "200", min: "1", max: "10000", "aria-label": "Limit" });
  const go = el("button", { type: "submit", text: "Search" });
  const form = el("form", { class: "inline-form" }, actor, patient, action, outcome, since, until, limit, go);
  const listBox = el("div", { id: "audit" });
  body.append(el("h2", { text: "Audit log" }), form, listBox);
  async function load() {
    const q = new URLSearchParams();
    if (actor.value.trim()) q.set("actor", actor.value.trim());
    if (patient.value.trim()) q.set("patient", patient.value.trim());
    if (action.value.trim()) q.set("action", action.value.trim());
    if (outcome.value) q.set("outcome", outcome.value);
    if (since.value) q.set("since_ms", String(new Date(since.value).getTime()));
    if (until.value) q.set("until_ms", String(new Date(until.value).getTime()));
    q.set("limit", limit.value || "200");
    const entries = await api(`/api/v1/audit?${q}`);
    listBox.replaceChildren(entries.length ? table(["#", "Time", "Actor", "Role", "Action", "Patient", "Outcome", "Detail"], entries.map(e => el("tr", { class: e.outcome === "denied" ? "denied" : "" },
      el("td", { class: "num", text: String(e.seq) }), el("td", { text: time(e.time_ms) }), el("td", { text: e.actor }), el("td", { text: e.role || "" }),
      el("td", { text: e.action }), el("td", { text: e.patient || (e.patients || []).join(", ") }), el("td", { text: e.outcome }), el("td", { class: "muted", text: e.detail || "" }))), { class: "grid audit" }) : emptyState("No entries match."));
  }
  form.onsubmit = e => { e.preventDefault(); busy(go, load); };
  busy(go, load);
}
