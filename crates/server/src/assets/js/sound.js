// Audible and visible cue for high-priority alarms nobody has acknowledged
// yet: a Web Audio beep every few seconds (unless muted) and a banner.

import { ward, subscribe } from "./live.js";

const KEY = "medmesh.muted";
const REPEAT_MS = 4000;
let ctx = null;
let timer = null;
let beeps = 0;

export function muted() { return localStorage.getItem(KEY) === "1"; }

export function setMuted(on) {
  localStorage.setItem(KEY, on ? "1" : "0");
  renderMute();
}

function renderMute() {
  const b = document.getElementById("mute");
  b.textContent = muted() ? "Sound: muted" : "Sound: on";
  b.setAttribute("aria-pressed", muted() ? "true" : "false");
}

/** Two short tones; counted on <html data-beeps> so tests can see them. */
function beep() {
  beeps += 1;
  document.documentElement.dataset.beeps = String(beeps);
  if (muted()) return;
  try {
    ctx = ctx || new AudioContext();
    if (ctx.state === "suspended") ctx.resume();
    for (const [at, freq] of [[0, 880], [0.22, 660]]) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = "square";
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.08, ctx.currentTime + at);
      gain.gain.exponentialRampToValueAtTime(0.0001, ctx.currentTime + at + 0.18);
      osc.connect(gain).connect(ctx.destination);
      osc.start(ctx.currentTime + at);
      osc.stop(ctx.currentTime + at + 0.2);
    }
  } catch (e) {
    console.warn("alarm sound unavailable", e);
  }
}

function unacknowledgedHigh() {
  const now = Date.now();
  return [...ward.alarms.values()].filter(a => a.priority === "high" && a.state === "active"
    && !(a.snoozed_until_ms && a.snoozed_until_ms > now));
}

function update(change) {
  const pending = unacknowledgedHigh();
  const banner = document.getElementById("alarm-banner");
  banner.hidden = pending.length === 0;
  banner.textContent = pending.length ? `⚠ ${pending.length} high-priority alarm${pending.length > 1 ? "s" : ""} not acknowledged` : "";
  document.body.classList.toggle("high-alarm", pending.length > 0);
  const raisedNow = change && change.alarms.some(e => e.change === "raised" && e.alarm.priority === "high");
  if (pending.length && !timer) { beep(); timer = setInterval(beep, REPEAT_MS); }
  else if (pending.length && raisedNow) beep();
  if (!pending.length && timer) { clearInterval(timer); timer = null; }
}

let unsubscribe = null;
/** Starts watching alarms (clinicians and admins only). */
export function startCues() {
  const b = document.getElementById("mute");
  b.hidden = false;
  b.onclick = () => setMuted(!muted());
  renderMute();
  // Browsers allow sound only after a gesture: unlock on the first one.
  document.addEventListener("pointerdown", () => { ctx = ctx || new AudioContext(); ctx.resume(); }, { once: true });
  unsubscribe = subscribe(update);
  update(null);
}

export function stopCues() {
  if (unsubscribe) unsubscribe();
  unsubscribe = null;
  if (timer) clearInterval(timer);
  timer = null;
  document.getElementById("mute").hidden = true;
  document.getElementById("alarm-banner").hidden = true;
  document.body.classList.remove("high-alarm");
}
