// medmesh dashboard: sign-in, navigation by role, hash routes, views.
//
// Routes: #/station (central station), #/alarms (alarm console), #/home
// (home monitoring), #/patients/{id} (patient view), #/chart/{id} (bedside
// charting of observations, for tablets), #/portal (patients and
// those they share data with), #/admin/{devices|users|teams|audit},
// #/reports (alarm load).
// The navigation shows only what the signed-in role may use; the server
// checks every request anyway.

import { api } from "./js/api.js";
import { el } from "./js/ui.js";
import * as live from "./js/live.js";
import { startCues, stopCues } from "./js/sound.js";
import { watchSystem } from "./js/system.js";
import * as station from "./js/station.js";

const CLINICAL = ["admin", "physician", "nurse"];
const SHARED = ["patient", "caregiver", "insurer", "researcher"];

/** What a role may use, mirroring the server's policy (README "Access control"). */
export function capabilities(role) {
  return {
    ward: CLINICAL.includes(role),
    actOnAlarms: CLINICAL.includes(role),
    // Charting by hand: the care team's clinicians, under their own name.
    chart: role === "physician" || role === "nurse",
    devices: CLINICAL.includes(role) || role === "operations",
    portal: SHARED.includes(role),
    manageDevices: role === "admin" || role === "operations",
    manageUsers: role === "admin",
    readAudit: role === "admin",
    // Clinicians get their care teams' wards, operations every ward
    // without patient names (the server decides both).
    alarmLoad: CLINICAL.includes(role) || role === "operations",
  };
}

function navItems(ctx) {
  const c = ctx.can;
  return [
    c.ward && ["#/station", "Central station"],
    c.ward && ["#/alarms", "Alarms"],
    c.ward && ["#/home", "Home monitoring"],
    c.portal && ["#/portal", ctx.me.role === "patient" ? "My health" : "Shared with me"],
    (c.manageDevices || c.manageUsers) && ["#/admin", ctx.me.role === "admin" ? "Admin" : "Devices"],
    c.alarmLoad && ["#/reports", "Alarm load"],
  ].filter(Boolean);
}

// Views load on first use, so the first paint needs only the station's code.
const VIEWS = {
  station: { allowed: c => c.ward, load: async () => station },
  alarms: { allowed: c => c.ward, load: () => import("./js/alarms.js") },
  home: { allowed: c => c.ward, load: () => import("./js/home.js") },
  patients: { allowed: c => c.ward, load: () => import("./js/patient.js") },
  chart: { allowed: c => c.chart, load: () => import("./js/chart.js") },
  portal: { allowed: c => c.portal, load: () => import("./js/portal.js") },
  admin: { allowed: c => c.manageDevices || c.manageUsers, load: () => import("./js/admin.js") },
  reports: { allowed: c => c.alarmLoad, load: () => import("./js/report.js") },
};

let ctx = null;
let unmount = () => {};
let routing = 0;

async function route() {
  if (!ctx) return;
  const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  const view = VIEWS[name];
  if (!view || !view.allowed(ctx.can)) {
    const first = navItems(ctx)[0];
    if (first && location.hash !== first[0]) { location.hash = first[0]; return; }
  }
  const mine = ++routing;
  const root = document.getElementById("view");
  unmount();
  unmount = () => {};
  root.replaceChildren();
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("on", a.getAttribute("href") === "#/" + name);
  if (!view || !view.allowed(ctx.can)) {
    root.append(el("p", { class: "empty", text: "Nothing to show for this account." }));
    return;
  }
  const mod = await view.load();
  if (mine !== routing) return;
  root.dataset.view = name;
  unmount = mod.mount(root, ctx, rest.map(decodeURIComponent).join("/")) || (() => {});
}

function renderSummary() {
  if (!ctx || !ctx.can.ward) { document.getElementById("summary").textContent = ""; return; }
  const n = live.ward.alarms.size;
  document.getElementById("summary").textContent = `${live.ward.patients.size} patients · ${n} active alarm${n === 1 ? "" : "s"}`;
}

function showSignIn() {
  ctx = null;
  unmount();
  unmount = () => {};
  live.stop();
  stopCues();
  document.getElementById("view").hidden = true;
  document.getElementById("view").replaceChildren();
  document.getElementById("nav").replaceChildren();
  document.getElementById("user").hidden = true;
  document.getElementById("conn").hidden = true;
  document.getElementById("summary").textContent = "";
  document.getElementById("toasts")?.replaceChildren();
  document.getElementById("sign-in").hidden = false;
}

async function start() {
  let me;
  try { me = await api("/api/v1/me"); } catch { showSignIn(); return; }
  ctx = { me, can: capabilities(me.role) };
  document.getElementById("user-name").textContent = `${me.username} (${me.role})`;
  document.getElementById("user").hidden = false;
  document.getElementById("sign-in").hidden = true;
  document.getElementById("nav").replaceChildren(...navItems(ctx).map(([href, label]) => el("a", { href, text: label })));
  document.getElementById("conn").hidden = false;
  await live.loadWard();
  live.connect();
  if (ctx.can.ward) startCues();
  if (ctx.can.manageDevices) watchSystem();
  document.getElementById("view").hidden = false;
  await route();
}

live.onStatus(s => {
  const conn = document.getElementById("conn");
  conn.textContent = s === "live" ? "live" : "reconnecting…";
  conn.className = "conn " + (s === "live" ? "conn-up" : "conn-down");
});
live.subscribe(renderSummary);
window.addEventListener("hashchange", route);
window.addEventListener("medmesh:signed-out", () => { if (ctx) showSignIn(); });

document.getElementById("sign-in").addEventListener("submit", async e => {
  e.preventDefault();
  const form = new FormData(e.target);
  const error = document.getElementById("sign-in-error");
  try {
    await api("/api/v1/login", { method: "POST", body: { username: form.get("username"), password: form.get("password") } });
  } catch (err) {
    error.textContent = err.message;
    return;
  }
  error.textContent = "";
  e.target.reset();
  start();
});

document.getElementById("sign-out").addEventListener("click", async () => {
  await api("/api/v1/logout", { method: "POST" }).catch(() => {});
  showSignIn();
});

start().catch(() => showSignIn());
