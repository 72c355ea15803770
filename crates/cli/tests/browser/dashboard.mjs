// End-to-end test of the medmesh dashboard in headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core). Run by
// crates/cli/tests/dashboard.rs, which starts the server, admits the
// patients and publishes readings over MQTT when this script asks:
//
//   node dashboard.mjs <base-url> <screenshot-dir>
//   environment: NURSE_USER, NURSE_PASSWORD, PATIENT_USER, PATIENT_PASSWORD,
//                CARER_USER, CARER_PASSWORD, ADMIN_USER, ADMIN_PASSWORD,
//                OPS_USER, OPS_PASSWORD, OPS_DEVICE (a device to re-issue),
//                LIVE_PATIENT (a patient id), WARD_SIZE (tiles expected),
//                SCENARIO ("station": only the 24-bed station at 1920x1080,
//                which needs NURSE_* and LIVE_PATIENT alone; else the tour)
//
// Protocol on stdout/stdin, one line each:
//   script: "WAIT <step> <json>"   the test does what the step needs, then
//   test:   "GO"                   ... and the script goes on.
//   script: "RESULT <name> <json>" facts the Rust test asserts on.
//   script: "DONE"                 every step passed.
// Any failure: a message on stderr and exit code 1.

import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

const [base, shots] = process.argv.slice(2);
const env = name => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const livePatient = env("LIVE_PATIENT");
const wardSize = Number(env("WARD_SIZE"));
const scenario = process.env.SCENARIO || "tour";

const stdin = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function wait(step, data = {}) {
  console.log(`WAIT ${step} ${JSON.stringify(data)}`);
  const { value, done } = await stdin.next();
  if (done || value.trim() !== "GO") throw new Error(`test answered ${JSON.stringify(value)} to ${step}`);
}
const result = (name, data) => console.log(`RESULT ${name} ${JSON.stringify(data)}`);

const userDataDir = mkdtempSync(join(tmpdir(), "medmesh-chromium-"));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required"],
  // The station scenario is the central station's own screen: full HD.
  viewport: scenario === "station" ? { width: 1920, height: 1080 } : { width: 1400, height: 900 },
});
context.setDefaultTimeout(15000);
const page = context.pages()[0] || await context.newPage();
const errors = [];
page.on("pageerror", e => errors.push(String(e)));
// Resources that fail to load are reported by URL below (a 401 before
// signing in is expected); console errors and uncaught exceptions fail.
page.on("console", m => { if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push(m.text()); });
page.on("response", r => {
  const path = new URL(r.url()).pathname;
  // The charting step sends one set with a typo on purpose (422).
  const expected = (r.status() === 401 && path === "/api/v1/me") || (r.status() === 422 && path.endsWith("/observation-sets"));
  if (r.status() >= 400 && !expected) errors.push(`${r.status()} ${r.request().method()} ${path}`);
});

async function signIn(user, password) {
  await page.goto(base + "/");
  await page.fill("#sign-in input[name=username]", user);
  await page.fill("#sign-in input[name=password]", password);
  await page.click("#sign-in button[type=submit]");
}

// The central station of a 24-bed ward on a 1920x1080 screen: every tile
// whole inside the window with nothing scrolled, all of one size, and the
// live patient's tile showing oxygen, ACVPU, the ages of NEWS2's components,
// the most urgent alarm and the count; then their trend chart's fixed axis
// and alarm limits.
async function stationFits() {
  await signIn(env("NURSE_USER"), env("NURSE_PASSWORD"));
  await page.waitForFunction(n => document.querySelectorAll("#ward .tile").length === n, wardSize);
  const tile = `#ward .tile[data-patient="${livePatient}"]`;
  await page.waitForSelector(`${tile} .tile-alarm .ack`);
  await page.waitForSelector("#conn.conn-up");
  // Fonts and layout settled: two frames after the last change.
  await page.evaluate(() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r))));
  const fit = await page.evaluate(() => {
    const w = window.innerWidth, h = window.innerHeight;
    const tiles = [...document.querySelectorAll("#ward .tile")];
    const rects = tiles.map(t => t.getBoundingClientRect());
    const inside = rects.filter(r => r.left >= 0 && r.top >= 0 && r.right <= w && r.bottom <= h).length;
    // Nothing inside a tile spills out of it (cut off by its overflow).
    const spilled = tiles.filter(t => [...t.querySelectorAll(".vital, .tile-alarm, .tile-alarm-foot, h3, .tile-sub, .seen")]
      .some(c => { const a = c.getBoundingClientRect(), b = t.getBoundingClientRect(); return a.bottom > b.bottom + 0.5 || a.right > b.right + 0.5; }))
      .map(t => t.dataset.patient);
    // Names shown whole: none cut short with an ellipsis.
    const cut = tiles.map(t => t.querySelector(".name")).filter(n => n.scrollWidth > n.clientWidth).map(n => n.textContent);
    return {
      viewport: [w, h], tiles: tiles.length, inside, spilled, names_cut: cut,
      scroll: [document.scrollingElement.scrollLeft, document.scrollingElement.scrollTop],
      sizes: [...new Set(rects.map(r => `${Math.round(r.width)}x${Math.round(r.height)}`))],
    };
  });
  result("station_fit", fit);
  const shown = await page.evaluate(sel => {
    const t = document.querySelector(sel);
    const cell = key => {
      const c = t.querySelector(`.vital[data-key=${key}]`);
      return { value: c.querySelector(".value").textContent, unit: c.querySelector(".unit").textContent, when: c.querySelector(".when").textContent, score: c.dataset.score };
    };
    return {
      name: t.querySelector(".name").textContent, bed: t.querySelector(".bed").textContent,
      news2: t.querySelector(".news2").textContent,
      oxygen: cell("oxygen_flow"), acvpu: cell("consciousness"), rr: cell("respiratory_rate"), bp: cell("systolic_bp"),
      alarm: t.querySelector(".tile-alarm .prio").textContent, alarm_rows: t.querySelectorAll(".tile-alarm").length,
      count: t.querySelector(".alarm-count").textContent,
    };
  }, tile);
  // A patient with no oxygen or consciousness reading: what NEWS2 assumes.
  const other = await page.evaluate(() => {
    const t = [...document.querySelectorAll("#ward .tile")].find(x => !x.querySelector(".tile-alarm"));
    return { oxygen: t.querySelector(".vital[data-key=oxygen_flow] .value").textContent, acvpu: t.querySelector(".vital[data-key=consciousness] .value").textContent };
  });
  result("station_tile", { ...shown, quiet_patient: other });
  await page.screenshot({ path: join(shots, "station-24.png") });

  // Their trends: fixed clinical ranges, and the profile's limits drawn.
  await page.click(`${tile} a.name`);
  const chart = ".chart[data-key=heart_rate]";
  await page.waitForSelector(`${chart} canvas`);
  const charts = await page.$$eval(".chart", cs => cs.map(c => ({ key: c.dataset.key, range: c.dataset.range || "", limits: c.dataset.limits })));
  await page.screenshot({ path: join(shots, "trends-limits.png"), fullPage: true });
  result("trend_limits", { charts });
}

try {
  if (scenario === "station") {
    await stationFits();
  } else {
    // --- sign in as the nurse; the ward of WARD_SIZE patients paints -------
    await page.goto(base + "/");
    await page.fill("#sign-in input[name=username]", env("NURSE_USER"));
    await page.fill("#sign-in input[name=password]", env("NURSE_PASSWORD"));
    const started = Date.now();
    await page.click("#sign-in button[type=submit]");
    await page.waitForFunction(n => document.querySelectorAll("#ward .tile").length === n, wardSize, { timeout: 30000 });
    const signInToTilesMs = Date.now() - started;
    const nav = await page.$$eval("#nav a", as => as.map(a => a.textContent));
    result("nurse_nav", nav);
    await page.screenshot({ path: join(shots, "station.png") });

    // A cold load of the page with the session in place: navigation start to
    // every tile in the DOM and a frame painted after it.
    await page.evaluate(() => localStorage.setItem("medmesh.ward", ""));
    await page.reload();
    const firstPaintMs = await page.evaluate(async n => {
      while (document.querySelectorAll("#ward .tile").length !== n) await new Promise(r => setTimeout(r, 5));
      await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
      const at = name => Math.round(performance.getEntriesByName(name)[0]?.startTime ?? -1);
      const api = performance.getEntriesByType("resource").find(e => e.name.endsWith("/api/v1/patients"));
      return { painted: Math.round(performance.now()), dom_content_loaded: Math.round(performance.getEntriesByType("navigation")[0].domContentLoadedEventEnd),
        patients_loaded: at("medmesh:patients-loaded"), patients_api: Math.round(api ? api.duration : -1), station_built: at("medmesh:station-built") };
    }, wardSize);
    result("ward", { tiles: wardSize, sign_in_to_tiles_ms: signInToTilesMs, load_to_painted_ms: firstPaintMs.painted, timings_ms: firstPaintMs });
    await page.waitForSelector("#conn.conn-up");

    // --- a value published after the page loaded shows up live -----------
    const tile = `#ward .tile[data-patient="${livePatient}"]`;
    const hr = `${tile} .vital[data-key=heart_rate] .value`;
    const before = await page.textContent(hr);
    await wait("publish-heart-rate", { patient: livePatient });
    await page.waitForFunction(([sel, want]) => document.querySelector(sel).textContent === want, [hr, "97"]);
    result("live_value", { before, after: await page.textContent(hr) });

    // A patient without a temperature: NEWS2 is a lower bound ("≥"), and the
    // badge's title gives each component's score and age.
    const partial = `#ward .tile[data-patient="${env("PARTIAL_PATIENT")}"] .news2`;
    result("news2_partial", { text: await page.textContent(partial), title: await page.getAttribute(partial, "title") });

    // --- every patient's reading at once: the page keeps up, no long stall --
    // Long tasks (over 50 ms of main thread) are what a user feels as a freeze.
    const longTasksObserved = await page.evaluate(() => {
      window.__longest = 0;
      new PerformanceObserver(l => { for (const e of l.getEntries()) window.__longest = Math.max(window.__longest, e.duration); })
        .observe({ type: "longtask", buffered: false });
      return PerformanceObserver.supportedEntryTypes.includes("longtask");
    });
    await wait("publish-whole-ward");
    await page.waitForFunction(() => [...document.querySelectorAll("#ward .tile .vital[data-key=respiratory_rate] .value")].every(v => v.textContent === "17"), null, { timeout: 30000 });
    result("whole_ward", { long_tasks_observed: longTasksObserved, longest_task_ms: Math.round(await page.evaluate(() => window.__longest)) });

    // --- a high alarm: visual and audible cue, acknowledged from the tile --
    const beepsBefore = Number(await page.evaluate(() => document.documentElement.dataset.beeps || "0"));
    await wait("raise-alarm", { patient: livePatient });
    const ackButton = `${tile} .tile-alarm.prio-high button.ack`;
    await page.waitForSelector(ackButton);
    await page.waitForSelector("#alarm-banner:not([hidden])");
    const cue = await page.evaluate(([t]) => ({
      tile_class: document.querySelector(t).className,
      banner: document.getElementById("alarm-banner").textContent,
      beeps: Number(document.documentElement.dataset.beeps || "0"),
    }), [tile]);
    cue.beeps -= beepsBefore;
    await page.screenshot({ path: join(shots, "alarm.png") });
    // The mute toggle: pressed, remembered, and pressed again.
    await page.click("#mute");
    cue.muted = await page.evaluate(() => [document.getElementById("mute").getAttribute("aria-pressed"), localStorage.getItem("medmesh.muted"), document.getElementById("mute").textContent]);
    await page.click("#mute");
    cue.unmuted = await page.getAttribute("#mute", "aria-pressed");
    const alarmId = await page.getAttribute(`${tile} .tile-alarm.prio-high`, "data-alarm");
    await page.click(ackButton);
    await page.waitForSelector(`${tile} .tile-alarm[data-alarm="${alarmId}"].state-acknowledged`);
    await page.waitForSelector("#alarm-banner[hidden]", { state: "attached" });
    result("acknowledged", { alarm: Number(alarmId), ...cue });
    await wait("check-acknowledged", { alarm: Number(alarmId) });

    // --- alarm console: the acknowledged alarm listed, snoozed from there --
    await page.click('#nav a[href="#/alarms"]');
    const row = `#alarm-console tr[data-alarm="${alarmId}"]`;
    await page.waitForSelector(row);
    const consoleRow = await page.$$eval(`${row} td`, tds => tds.map(td => td.textContent));
    await page.fill(`${row} input.minutes`, "15");
    await page.click(`${row} button.snooze`);
    await page.waitForFunction(sel => /snoozed until/.test(document.querySelector(sel + " td.state").textContent), row);
    await page.screenshot({ path: join(shots, "alarms.png") });
    result("console", { row: consoleRow });

    // --- home monitoring: the patient with the alarm comes first ----------
    await page.click('#nav a[href="#/home"]');
    await page.waitForSelector("#home-list tbody tr");
    const order = await page.$$eval("#home-list tbody tr", rows => rows.map(r => r.dataset.patient));
    await page.screenshot({ path: join(shots, "home.png") });
    result("home", { order });

    // --- patient view: a chart of the readings, live, and a long range ----
    await page.goto(`${base}/#/patients/${encodeURIComponent(livePatient)}`);
    const chart = '.chart[data-key=heart_rate]';
    await page.waitForSelector(`${chart} canvas`);
    const points1h = Number(await page.getAttribute(chart, "data-points"));
    await wait("publish-more", { patient: livePatient });
    await page.waitForFunction(([sel, n]) => Number(document.querySelector(sel).dataset.points) > n, [chart, points1h]);
    const pointsLive = Number(await page.getAttribute(chart, "data-points"));
    const tableRows = Number(await page.getAttribute(".obs-table", "data-rows"));
    const devices = await page.$$eval(".patient-devices tr[data-device]", r => r.map(x => x.dataset.device));
    // The device reports its battery: the devices table shows it live.
    await wait("publish-battery", { device: devices[0] });
    const batteryCell = `.patient-devices tr[data-device="${devices[0]}"] td.battery`;
    await page.waitForFunction(sel => document.querySelector(sel).textContent === "15 %", batteryCell);
    const battery = await page.textContent(batteryCell);
    const carePlan = await page.textContent(".care-plan");
    await page.screenshot({ path: join(shots, "patient.png"), fullPage: true });
    await page.click('.ranges button[data-range="90 days"]');
    await page.waitForFunction(() => document.querySelector(".charts").dataset.state === "ready"
      && document.querySelector(".ranges button.on").dataset.range === "90 days");
    await page.waitForSelector(`${chart} canvas`);
    const buckets90d = Number(await page.getAttribute(chart, "data-points"));
    result("patient", { points_1h: points1h, points_live: pointsLive, table_rows: tableRows, devices, battery, care_plan: carePlan, buckets_90d: buckets90d });

    // --- charting by hand: the form on the patient page, the bedside view --
    const onPatientPage = await page.$$eval(".patient-chart form.chart-form input:not([type=radio])", i => i.map(x => x.name));
    await page.click(".patient-chart a[href^='#/chart/']");
    const bedside = `form.chart-form.big[data-patient="${livePatient}"]`;
    await page.waitForSelector(bedside);
    // A typo first: SpO2 0 is refused whole, with the reason shown.
    await page.fill(`${bedside} input[name=spo2]`, "0");
    await page.click(`${bedside} button[type=submit]`);
    await page.waitForSelector(`${bedside} .chart-message.error`);
    const refusal = await page.textContent(`${bedside} .chart-message`);
    for (const [name, value] of [["respiratory_rate", "24"], ["spo2", "93"], ["systolic_bp", "104"], ["diastolic_bp", "66"], ["heart_rate", "112"], ["body_temperature", "38.4"]]) {
      await page.fill(`${bedside} input[name=${name}]`, value);
    }
    await page.check(`${bedside} input[value=oxygen]`);
    await page.fill(`${bedside} input[name=oxygen_flow]`, "2");
    await page.check(`${bedside} input[value=C]`);
    await page.click(`${bedside} button[type=submit]`);
    await page.waitForSelector(".chart-result .news2[data-score]");
    await page.screenshot({ path: join(shots, "chart.png"), fullPage: true });
    result("chart", { on_patient_page: onPatientPage, refusal, saved: await page.getAttribute(bedside, "data-saved"),
      news2: await page.textContent(".chart-result .news2"), message: await page.textContent(`${bedside} .chart-message`) });

    // --- the patient's own portal: nav, readings, consents, revoke --------
    await page.click("#sign-out");
    await page.waitForSelector("#sign-in:not([hidden])");
    await page.fill("#sign-in input[name=username]", env("PATIENT_USER"));
    await page.fill("#sign-in input[name=password]", env("PATIENT_PASSWORD"));
    await page.click("#sign-in button[type=submit]");
    await page.waitForSelector("#consents table");
    await page.waitForSelector(".trends .chart canvas");
    const patientNav = await page.$$eval("#nav a", as => as.map(a => a.textContent));
    const consents = await page.$$eval("#consents tr[data-consent]", rows => rows.map(r => r.textContent));
    await page.screenshot({ path: join(shots, "portal.png"), fullPage: true });
    const revoke = "#consents tr[data-consent] button.revoke";
    const consentId = await page.$eval(revoke, b => b.closest("tr").dataset.consent);
    await page.click(revoke);
    await page.waitForFunction(id => !document.querySelector(`#consents tr[data-consent="${id}"] button.revoke`), consentId);
    // Grant the carer readings and alerts for a new purpose, from the form.
    await page.fill("form.grant input[name=grantee]", "carer.0001");
    await page.fill("form.grant input[name=purpose]", "night checks");
    await page.check("form.grant input[name=alarms]");
    await page.click("form.grant button[type=submit]");
    await page.waitForFunction(() => [...document.querySelectorAll("#consents tr[data-consent]")].some(r => r.textContent.includes("night checks") && r.querySelector("button.revoke")));
    result("portal", { nav: patientNav, consents, revoked: consentId, reminders: await page.textContent("main section:last-of-type") });

    // --- the carer: what the patient shares, and nothing else -------------
    await page.click("#sign-out");
    await page.waitForSelector("#sign-in:not([hidden])");
    await page.fill("#sign-in input[name=username]", env("CARER_USER"));
    await page.fill("#sign-in input[name=password]", env("CARER_PASSWORD"));
    await page.click("#sign-in button[type=submit]");
    const card = `.shared-card[data-patient="${livePatient}"]`;
    await page.waitForSelector(`${card} .portal-latest`);
    const carerNav = await page.$$eval("#nav a", as => as.map(a => a.textContent));
    const cards = await page.$$eval(".shared-card", cs => cs.map(c => c.dataset.patient));
    const shared = await page.textContent(card);
    await page.click(`${card} button`);
    await page.waitForSelector("#view .trends .chart[data-key=heart_rate] canvas");
    await page.screenshot({ path: join(shots, "carer.png") });
    result("carer", { nav: carerNav, cards, shared });

    // --- the administrator: devices (provision), users, audit log ---------
    await page.click("#sign-out");
    await page.waitForSelector("#sign-in:not([hidden])");
    await page.fill("#sign-in input[name=username]", env("ADMIN_USER"));
    await page.fill("#sign-in input[name=password]", env("ADMIN_PASSWORD"));
    await page.click("#sign-in button[type=submit]");
    await page.waitForSelector("#nav a");
    const adminNav = await page.$$eval("#nav a", as => as.map(a => a.textContent));
    await page.click('#nav a[href="#/admin"]');
    await page.waitForSelector(".admin-body[data-tab=devices] table.devices");
    await page.fill('input[aria-label="New device id"]', "spare-9");
    await page.click("text=Provision credentials");
    await page.waitForSelector(".secret .secret-value");
    const secret = await page.$$eval(".secret .secret-value", c => c.map(x => x.textContent));
    await page.waitForSelector('tr[data-device="spare-9"]');
    const adminBattery = await page.textContent(`tr[data-device="${devices[0]}"] td.battery`);
    await page.screenshot({ path: join(shots, "admin-devices.png") });
    await page.click('.tabs a[href="#/admin/users"]');
    await page.waitForSelector(`tr[data-user="${env("NURSE_USER")}"]`);
    await page.click('.tabs a[href="#/admin/audit"]');
    await page.waitForSelector("#audit table tbody tr");
    const audit = await page.$$eval("#audit tbody tr", rows => rows.map(r => r.children[4].textContent));
    await page.screenshot({ path: join(shots, "admin-audit.png") });
    result("admin", { nav: adminNav, device: secret[0], password: secret[1], battery: adminBattery, audit_actions: audit.slice(0, 50) });

    // The alarm load report: 24 h first, then 7 days; what each ward's table
    // shows, and the period it asked for (the test asks the API the same).
    await page.click('#nav a[href="#/reports"]');
    await page.waitForSelector('#alarm-load[data-state=ready][data-period="24 h"] table.load');
    await page.click('button[data-period="7 days"]');
    await page.waitForSelector('#alarm-load[data-state=ready][data-period="7 days"] table.load');
    const loadReport = await page.evaluate(() => {
      const box = document.getElementById("alarm-load");
      return {
        since: Number(box.dataset.since), until: Number(box.dataset.until),
        wards: [...box.querySelectorAll("section.load-ward")].map(s => ({
          ward: s.dataset.ward,
          rules: [...s.querySelectorAll("tr[data-rule]")].map(r => r.dataset.rule),
          alarms: [...s.querySelectorAll("tr[data-rule] td.alarms")].map(td => Number(td.textContent)),
          top_patients: [...s.querySelectorAll(".load-tops div:first-child li")].map(li => li.textContent),
        })),
      };
    });
    await page.screenshot({ path: join(shots, "alarm-load.png"), fullPage: true });
    result("admin_load", loadReport);
    // Back to the Admin view, where the next account's sign-in starts.
    await page.click('#nav a[href="#/admin"]');
    await page.waitForSelector(".admin-body[data-tab=devices]");

    // --- operations: devices and their credentials, no patient data ------
    await page.click("#sign-out");
    await page.waitForSelector("#sign-in:not([hidden])");
    await page.fill("#sign-in input[name=username]", env("OPS_USER"));
    await page.fill("#sign-in input[name=password]", env("OPS_PASSWORD"));
    // What the server gave this page as its patient list.
    const opsPatients = page.waitForResponse(r => new URL(r.url()).pathname === "/api/v1/patients");
    await page.click("#sign-in button[type=submit]");
    const opsPatientList = await (await opsPatients).json();
    await page.waitForSelector(".admin-body[data-tab=devices] table.devices tr[data-device]");
    const opsNav = await page.$$eval("#nav a", as => as.map(a => a.textContent));
    const opsTabs = await page.$$eval(".tabs a", as => as.map(a => a.textContent));
    // Clinical routes typed in by hand lead back to the devices view.
    const opsRedirects = [];
    for (const hash of ["#/station", `#/patients/${encodeURIComponent(livePatient)}`, "#/alarms"]) {
      await page.evaluate(h => { document.querySelector(".admin-body").dataset.stale = "1"; location.hash = h; }, hash);
      await page.waitForFunction(() => location.hash === "#/admin");
      await page.waitForSelector(".admin-body[data-tab=devices]:not([data-stale]) table.devices tr[data-device]");
      opsRedirects.push(hash);
    }
    // A new token for an existing device, from its row.
    const opsDevice = env("OPS_DEVICE");
    await page.click(`tr[data-device="${opsDevice}"] button.provision`);
    await page.waitForSelector(".secret .secret-value");
    const opsSecret = await page.$$eval(".secret .secret-value", c => c.map(x => x.textContent));
    const opsPage = await page.evaluate(() => ({
      device_rows: [...document.querySelectorAll("table.devices tr[data-device]")].map(r => r.dataset.device),
      // Anything that shows readings: tiles, vitals, charts, tables of observations.
      vitals: document.querySelectorAll("#ward .tile, .vital, .chart, .obs-table, .portal-latest").length,
      summary: document.getElementById("summary").textContent,
      text: document.body.innerText,
    }));
    await page.screenshot({ path: join(shots, "ops-devices.png") });
    result("operations", {
      nav: opsNav, tabs: opsTabs, redirects: opsRedirects, patients_given: opsPatientList.length,
      device_rows: opsPage.device_rows, vitals: opsPage.vitals, summary: opsPage.summary,
      shows_patient_names: /Patient \d{4}/.test(opsPage.text), device: opsSecret[0], password: opsSecret[1],
    });

    // Operations read the alarm load of every ward, naming nobody.
    await page.click('#nav a[href="#/reports"]');
    await page.waitForSelector('#alarm-load[data-state=ready] table.load');
    const opsLoad = await page.evaluate(() => ({
      wards: [...document.querySelectorAll("#alarm-load section.load-ward")].map(s => s.dataset.ward),
      top_patients: [...document.querySelectorAll("#alarm-load .load-tops div:first-child li")].map(li => li.textContent),
      links: document.querySelectorAll("#alarm-load a").length,
      shows_patient_names: /Patient \d{4}/.test(document.getElementById("alarm-load").innerText),
    }));
    result("ops_load", opsLoad);

  }
  if (errors.length) throw new Error("errors in the page:\n" + errors.join("\n"));
  console.log("DONE");
} catch (e) {
  console.error(e.stack || String(e));
  console.error("page errors:", errors.join("\n"));
  await page.screenshot({ path: join(shots, "failure.png"), fullPage: true }).catch(() => {});
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
  process.exit(process.exitCode || 0);
}
