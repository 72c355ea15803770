// medmesh's own alarms (a full disk: readings cannot be stored), shown to
// operations and administrators as a banner until resolved: from
// GET /api/v1/system/alarms at start, then the live stream's system_alarm
// events.

import { api } from "./api.js";
import * as live from "./live.js";

const active = new Map();

function render() {
  const banner = document.getElementById("system-banner");
  const alarms = [...active.values()];
  banner.hidden = alarms.length === 0;
  banner.textContent = alarms.map(a => `System: ${a.message}`).join(" | ");
}

/** Starts watching; once per sign-in, for roles that may read metrics. */
export async function watchSystem() {
  active.clear();
  live.onSystemAlarm(({ change, alarm }) => {
    if (change === "resolved") active.delete(alarm.id); else active.set(alarm.id, alarm);
    render();
  });
  const list = await api("/api/v1/system/alarms").catch(() => []);
  for (const a of list) if (a.resolved_ms === undefined) active.set(a.id, a);
  render();
}
