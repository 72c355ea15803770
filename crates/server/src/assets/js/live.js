// The live picture: patients and active alarms from GET /api/v1/patients,
// kept current by server-sent events from GET /api/v1/stream.
//
// Events are queued as they arrive and applied once per animation frame, so
// a ward of hundreds of patients publishing every second costs one DOM pass
// per frame, not one per event. Views subscribe and get, per frame, the set
// of patients that changed (with the vital-sign keys that changed) and the
// alarm changes.

import { api } from "./api.js";
import { alarmOrder } from "./ui.js";

export const ward = {
  /** patient id -> summary (patient, latest, news2, alarms, devices) */
  patients: new Map(),
  /** alarm id -> alarm (active and acknowledged) */
  alarms: new Map(),
  loaded: false,
};

const subscribers = new Set();
const statusSubscribers = new Set();
let queue = [];
let scheduled = false;
let source = null;
let reloadTimer = null;

/** fn(change) per frame: {patients: Map id -> Set(keys), alarms: [{change, alarm}], devices: [device_status or device_battery event], reloaded} */
export function subscribe(fn) { subscribers.add(fn); return () => subscribers.delete(fn); }
/** fn(state) on connection changes: "live", "reconnecting" */
export function onStatus(fn) { statusSubscribers.add(fn); return () => statusSubscribers.delete(fn); }
const systemSubscribers = new Set();
/** fn({change, alarm}) for each of medmesh's own alarms (operations and admin only receive them) */
export function onSystemAlarm(fn) { systemSubscribers.add(fn); return () => systemSubscribers.delete(fn); }

export async function loadWard() {
  // The alarm list too: it also holds alarms of patients outside the
  // caller's list that an escalation step naming them has reached.
  const [list, alarms] = await Promise.all([api("/api/v1/patients"), api("/api/v1/alarms")]);
  performance.mark("medmesh:patients-loaded");
  ward.patients.clear();
  ward.alarms.clear();
  // A fresh picture (after a reconnect, perhaps to a restarted server
  // whose numbers start again): only changes from now on are compared.
  applied.clear();
  for (const p of list) {
    ward.patients.set(p.id, p);
    for (const a of p.alarms) ward.alarms.set(a.id, a);
  }
  for (const a of alarms) ward.alarms.set(a.id, a);
  ward.loaded = true;
  notify({ patients: new Map(), alarms: [], devices: [], reloaded: true });
}

function notify(change) {
  for (const fn of subscribers) {
    try { fn(change); } catch (e) { console.error("live view update failed", e); }
  }
}

/** A patient the page does not know yet (admitted since): reload once things settle. */
function scheduleReload() {
  if (reloadTimer) return;
  reloadTimer = setTimeout(() => { reloadTimer = null; loadWard().catch(() => {}); }, 500);
}

function enqueue(type, data) {
  queue.push([type, data]);
  if (scheduled) return;
  scheduled = true;
  // Hidden tabs get no animation frames; a timer keeps their state current.
  if (document.hidden) setTimeout(flush, 250); else requestAnimationFrame(flush);
}

function flush() {
  scheduled = false;
  const batch = queue;
  queue = [];
  const change = { patients: new Map(), alarms: [], devices: [], reloaded: false };
  for (const [type, ev] of batch) {
    // A slow reader's skipped observations: reload the latest values (its
    // alarm changes are never skipped).
    if (type === "observations_skipped") { scheduleReload(); continue; }
    if (type === "device_status" || type === "device_battery") { change.devices.push(ev); continue; }
    if (type === "alarm") {
      if (!applyAlarm(ev)) continue;
      change.alarms.push(ev);
      keys(change, ev.alarm.patient_id);
      continue;
    }
    if (!ev.patient_id) continue;
    const p = ward.patients.get(ev.patient_id);
    if (!p) { scheduleReload(); continue; }
    const changed = keys(change, p.id);
    for (const o of ev.observations) {
      const old = p.latest[o.key];
      if (!old || old.time_ms <= o.time_ms) { p.latest[o.key] = o; changed.add(o.key); }
    }
    if (ev.news2) p.news2 = ev.news2;
  }
  if (change.patients.size || change.alarms.length || change.devices.length) notify(change);
}

function keys(change, id) {
  let s = change.patients.get(id);
  if (!s) { s = new Set(); change.patients.set(id, s); }
  return s;
}

/** alarm id -> number (`seq`) of the last recorded change applied */
const applied = new Map();

/** Applies an alarm change; false if a later one of that alarm came first
 * (a clinician's action is sent after its fsync, a rule's change at once). */
function applyAlarm({ change, alarm, seq }) {
  if (seq !== undefined) {
    if ((applied.get(alarm.id) ?? 0) > seq) return false;
    applied.set(alarm.id, seq);
  }
  const p = ward.patients.get(alarm.patient_id);
  if (change === "resolved") ward.alarms.delete(alarm.id); else ward.alarms.set(alarm.id, alarm);
  if (p) {
    p.alarms = p.alarms.filter(a => a.id !== alarm.id);
    if (change !== "resolved") p.alarms.push(alarm);
  }
  return true;
}

/** Opens the live stream once; events flow to every subscriber until stop(). */
export function connect() {
  if (source) return;
  const es = source = new EventSource("/api/v1/stream");
  const status = s => { for (const fn of statusSubscribers) fn(s); };
  // (Re)connected: whatever happened meanwhile is picked up by a reload.
  let first = true;
  es.onopen = () => { status("live"); if (!first) scheduleReload(); first = false; };
  es.onerror = () => {
    status("reconnecting");
    api("/api/v1/me").catch(() => {}); // a 401 here signs the page out
  };
  es.addEventListener("system_alarm", e => {
    const ev = JSON.parse(e.data);
    for (const fn of systemSubscribers) fn(ev);
  });
  for (const type of ["observations", "alarm", "device_status", "device_battery", "observations_skipped"]) {
    es.addEventListener(type, e => enqueue(type, type === "observations_skipped" ? null : JSON.parse(e.data)));
  }
}

export function stop() {
  if (source) { source.close(); source = null; }
  queue = [];
  ward.patients.clear();
  ward.alarms.clear();
  ward.loaded = false;
}

/** Acknowledge or snooze ({minutes}) an alarm as the signed-in user. */
export function actOnAlarm(id, action, body = {}) {
  return api(`/api/v1/alarms/${id}/${action}`, { method: "POST", body });
}

/** Active alarms of a patient, most urgent first. */
export function alarmsOf(id) {
  return [...ward.alarms.values()].filter(a => a.patient_id === id)
    .sort(alarmOrder);
}
