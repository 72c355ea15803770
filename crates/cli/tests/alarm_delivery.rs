//! Alarm escalation and delivery end to end: the server's escalation timer,
//! the alarm log, the live stream, MQTT, signed and retried webhooks (to a
//! Python http.server receiver that checks the signature its own way),
//! e-mail over SMTP (to aiosmtpd) for escalation levels and consented
//! followers, and quiet hours.

mod common;

use common::*;
use medmesh_model::now_ms;
use medmesh_server::Config;
use reqwest::Method;
use serde_json::{Value, json};
use std::io::BufRead;
use std::time::Duration;
use tokio::sync::mpsc;

const SECRET: &str = "a shared secret for tests";
const WAIT: Duration = Duration::from_secs(30);

/// A Python peer from `tests/peers/` printing one JSON object per line.
struct Peer {
    _child: Child,
    lines: mpsc::UnboundedReceiver<Value>,
}

impl Peer {
    fn start(script: &str, args: &[&str]) -> Peer {
        let path = format!("{}/tests/peers/{script}", env!("CARGO_MANIFEST_DIR"));
        Self::spawn(std::process::Command::new("python3").arg(path).args(args))
    }

    fn spawn(command: &mut std::process::Command) -> Peer {
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("peer starts (scripts/test.sh installs what it needs)");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let Ok(v) = serde_json::from_str(&line) else {
                    continue;
                };
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        Peer {
            _child: Child(child),
            lines,
        }
    }

    async fn next(&mut self) -> Value {
        tokio::time::timeout(WAIT, self.lines.recv())
            .await
            .expect("peer heard something within 30 s")
            .expect("peer still running")
    }
}

/// A local port nobody listens on.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server whose `[alarms]` table is `toml`. The charge nurse some ladders
/// name (`charge.kim`, a nurse in no care team, e-mail
/// `charge.kim@family.test`) exists before it starts, as a named user must.
async fn start_alarms(toml: &str) -> TestServer {
    let alarms = Config::from_toml(toml).expect("test config parses").alarms;
    let data_dir = tempfile::tempdir().unwrap();
    let token = provision_admin(data_dir.path());
    {
        let access = medmesh_access::Access::open(data_dir.path()).unwrap();
        access
            .directory
            .add_user(
                "charge.kim",
                medmesh_access::Role::Nurse,
                None,
                "a long test password",
            )
            .unwrap();
        access
            .directory
            .set_email("charge.kim", Some("charge.kim@family.test"))
            .unwrap();
    }
    TestServer {
        running: start_in_with(data_dir.path(), |c| c.alarms = alarms).await,
        data_dir,
        http: http_client(&token),
        token,
    }
}

/// Admits patient `id` named `name` to ward "Test", bed 1 (where
/// [`clinician`]'s care team works), with `device` assigned.
async fn admit_named(s: &TestServer, id: &str, name: &str, device: &str) {
    let (status, p) = s
        .send(
            Method::POST,
            "/api/v1/patients",
            json!({"id": id, "name": name, "ward": "Test", "bed": "1"}),
        )
        .await;
    assert_eq!(status, 201, "{p}");
    let (status, d) = s
        .send(
            Method::PUT,
            &format!("/api/v1/devices/{device}"),
            json!({"patient_id": id}),
        )
        .await;
    assert_eq!(status, 200, "{d}");
}

/// Pulse `bpm` for `device` at time `t_s`; 135 scores 3 (RCP NEWS2 Chart 1,
/// pulse >= 131): a single red parameter, a medium alarm (Chart 2); 80
/// scores 0 and resolves it.
async fn pulse(s: &TestServer, device: &str, t_s: f64, bpm: f64) {
    let (status, report) = s
        .device_post(
            &format!("/api/v1/devices/{device}/senml"),
            json!([{"bt": t_s, "n": "heart_rate", "u": "/min", "v": bpm}]),
        )
        .await;
    assert_eq!(status, 200, "{report}");
}

/// mon-1 reports a battery at 10 %: a low-priority alarm (battery-low),
/// which quiet hours hold; returns once the hold is counted.
async fn battery_low_is_held(s: &TestServer) {
    let (status, report) = s
        .device_post(
            "/api/v1/devices/mon-1/senml",
            json!([{"n": "battery", "u": "%EL", "v": 10}]),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        metric_reaches(s, &delivery_metric("webhook", "held"), 1.0).await,
        1.0
    );
}

/// Polls `/metrics` until `name` reaches `want` (or 30 s pass).
async fn metric_reaches(s: &TestServer, name: &str, want: f64) -> f64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = metric(&s.metrics().await, name);
        if v >= want || tokio::time::Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn delivery_metric(channel: &str, outcome: &str) -> String {
    format!("medmesh_alarm_deliveries_total{{channel=\"{channel}\",outcome=\"{outcome}\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalations_are_recorded_streamed_and_sent_by_signed_retried_webhooks() {
    // The receiver answers 503 twice before it takes anything.
    let mut hook = Peer::start("webhook_receiver.py", &[SECRET, "2"]);
    let port = hook.next().await["port"].as_u64().unwrap();
    let s = start_alarms(&format!(
        r#"
[alarms.escalation]
medium = [
  {{ roles = ["nurse"] }},
  {{ after = "1s", users = ["charge.kim"] }},
  {{ after = "2s", roles = ["physician"] }},
  {{ after = "1h", roles = ["admin"] }},
]
[alarms.webhook]
urls = ["http://127.0.0.1:{port}/medmesh"]
secret = "{SECRET}"
attempts = 4
first_retry = "100ms"
"#
    ))
    .await;
    s.admit("p1", "mon-1").await;
    let nurse = clinician(&s, "nurse.jones", medmesh_access::Role::Nurse);
    let mut stream = s.http.get(s.url("/api/v1/stream")).send().await.unwrap();
    let mqtt = s.running.mqtt_addr;
    // The nurse-call system: the administrator's alarm-feed token.
    let (feed, _) = s
        .running
        .access
        .directory
        .create_token_with(
            "test-admin",
            "nurse call",
            &[medmesh_access::TokenScope::AlarmFeed],
        )
        .unwrap();
    let mut mqtt_sub = Peer::spawn(
        std::process::Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &mqtt.port().to_string()])
            .args(["-u", "test-admin", "-P", &feed])
            .args(["-q", "1", "-t", "medmesh/v1/alarms/p1"]),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    pulse(&s, "mon-1", 1.76544e9, 135.0).await;

    // The raise: refused twice, then taken; one delivery id, every attempt signed.
    let attempts: Vec<Value> = vec![hook.next().await, hook.next().await, hook.next().await];
    let statuses: Vec<_> = attempts
        .iter()
        .map(|a| a["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [503, 503, 200]);
    for a in &attempts {
        assert_eq!(a["signature_ok"], true, "{a}");
        assert_eq!(
            a["delivery"], attempts[0]["delivery"],
            "retries keep their id"
        );
        assert_eq!(a["body"]["change"], "raised");
        assert_eq!(a["body"]["alarm"]["escalation_level"], 0);
    }
    let id = attempts[0]["body"]["alarm"]["id"].as_u64().unwrap();

    // Nobody acknowledges: the server's own timer climbs to level 1, then 2.
    for level in [1, 2] {
        let e = hook.next().await;
        assert_eq!(
            (e["status"].as_u64(), e["signature_ok"].as_bool()),
            (Some(200), Some(true))
        );
        assert_eq!(e["body"]["change"], "escalated", "{e}");
        assert_eq!(e["body"]["alarm"]["escalation_level"], level, "{e}");
        assert_eq!(e["body"]["alarm"]["id"], id);
    }
    assert_eq!(
        metric(&s.metrics().await, &delivery_metric("webhook", "retried")),
        2.0
    );
    assert_eq!(
        metric_reaches(&s, &delivery_metric("webhook", "delivered"), 3.0).await,
        3.0
    );

    // The same escalations went to the dashboard's live stream and to MQTT.
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !text.contains(r#""escalation_level":2"#) {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .expect("escalation on the live stream");
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap().unwrap()));
    }
    assert!(text.contains(r#""change":"escalated""#), "{text}");
    let levels_heard = loop {
        let m = mqtt_sub.next().await;
        if m["change"] == "escalated" && m["alarm"]["escalation_level"] == 2 {
            break m;
        }
    };
    assert_eq!(levels_heard["alarm"]["id"], id);

    // Acknowledging stops the climb: level 3 (after an hour) never comes,
    // however late it is.
    let (status, a) = send_as(
        &nurse,
        Method::POST,
        s.url(&format!("/api/v1/alarms/{id}/acknowledge")),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["escalation_level"], 2);
    let acked = hook.next().await;
    assert_eq!(acked["body"]["change"], "acknowledged");
    let ladder = r#"[alarms.escalation]
medium = [{ roles = ["nurse"] }, { after = "1s", roles = ["nurse"] }, { after = "2s", roles = ["nurse"] }, { after = "1h", roles = ["admin"] }]"#;
    let policy = Config::from_toml(ladder)
        .unwrap()
        .alarms
        .build()
        .unwrap()
        .policy;
    assert_eq!(
        s.running
            .pipeline
            .escalate_due(&policy, now_ms() + 7_200_000),
        0
    );

    // The escalation level is in the alarm log: it survives a restart.
    let s = s.restart().await;
    let (_, alarms) = s.get("/api/v1/alarms").await;
    assert_eq!(alarms[0]["id"], id);
    assert_eq!(alarms[0]["escalation_level"], 2);
    assert_eq!(alarms[0]["state"], "acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_webhook_receiver_is_retried_then_given_up_and_ingest_goes_on() {
    let port = free_port();
    let s = start_alarms(&format!(
        "[alarms.webhook]\nurls = [\"http://127.0.0.1:{port}/down\"]\nsecret = \"{SECRET}\"\nattempts = 3\nfirst_retry = \"50ms\"\n"
    ))
    .await;
    s.admit("p1", "mon-1").await;
    pulse(&s, "mon-1", 1.76544e9, 135.0).await;
    assert_eq!(
        metric_reaches(&s, &delivery_metric("webhook", "failed"), 1.0).await,
        1.0
    );
    let m = s.metrics().await;
    assert_eq!(metric(&m, &delivery_metric("webhook", "retried")), 2.0);
    assert_eq!(metric(&m, &delivery_metric("webhook", "delivered")), 0.0);
    // Ingest never waited for the receiver, and still works.
    pulse(&s, "mon-1", 1.76544e9 + 1.0, 80.0).await;
    let (status, health) = s.get("/healthz").await;
    assert_eq!(status, 200, "{health}");
}

/// `HH:MM:SS` (UTC) of a Unix time in ms.
fn utc_clock(ms: i64) -> String {
    let s = ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_hours_hold_low_priority_webhooks_until_they_end_but_never_medium() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let mut hook = Peer::start("webhook_receiver.py", &[SECRET, "0"]);
    let port = hook.next().await["port"].as_u64().unwrap();
    // Quiet from a minute ago until 8 s from now (UTC): time for the server
    // to start and the held notification to be counted, even on a busy machine.
    let quiet_end_ms = (now / 1000 + 8) * 1000;
    let alarms = Config::from_toml(&format!(
        "[alarms.quiet_hours]\nstart = \"{}\"\nend = \"{}\"\nutc_offset = \"UTC\"\n[alarms.webhook]\nurls = [\"http://127.0.0.1:{port}/\"]\nsecret = \"{SECRET}\"\n",
        utc_clock(now - 60_000),
        utc_clock(quiet_end_ms)
    ))
    .unwrap()
    .alarms;
    let running = start_in_with(dir.path(), |c| c.alarms = alarms).await;
    let s = TestServer {
        http: http_client(&admin_token(&running)),
        token: String::new(),
        running,
        data_dir: dir,
    };
    s.admit("p1", "mon-1").await;
    // A battery at 10 % raises a low-priority alarm: held...
    battery_low_is_held(&s).await;
    pulse(&s, "mon-1", 1.76544e9, 135.0).await;
    // The medium alarm comes at once, during quiet hours...
    let first = hook.next().await;
    assert_eq!(first["body"]["alarm"]["priority"], "medium", "{first}");
    assert!(first["received_ms"].as_i64().unwrap() < quiet_end_ms);
    // ...the low one only when they end.
    let second = hook.next().await;
    assert_eq!(second["body"]["alarm"]["priority"], "low", "{second}");
    assert_eq!(second["body"]["alarm"]["rule"], "battery-low", "{second}");
    assert_eq!(second["body"]["change"], "raised");
    assert!(
        second["received_ms"].as_i64().unwrap() >= quiet_end_ms,
        "{second}"
    );
    assert_eq!(
        metric(&s.metrics().await, &delivery_metric("webhook", "held")),
        1.0
    );
}

/// Stops `s` and starts it again on the same data directory with the
/// `[alarms]` table `toml` (a restart of the process: the sinks' deliveries
/// in progress stop with it).
async fn restart_alarms(s: TestServer, toml: &str) -> TestServer {
    restart_alarms_after(s, toml, |_| {}).await
}

/// [`restart_alarms`], doing `while_stopped` to the data directory between
/// the stop and the start (what a crash leaves behind, say).
async fn restart_alarms_after(
    s: TestServer,
    toml: &str,
    while_stopped: impl FnOnce(&std::path::Path),
) -> TestServer {
    let alarms = Config::from_toml(toml).expect("test config parses").alarms;
    let TestServer {
        running,
        data_dir,
        token,
        http,
    } = s;
    running.stop();
    while_stopped(data_dir.path());
    TestServer {
        running: start_in_with(data_dir.path(), |c| c.alarms = alarms).await,
        data_dir,
        token,
        http,
    }
}

/// Asserts the receiver hears nothing more for a while (nothing sent twice).
async fn nothing_more(hook: &mut Peer) {
    let more = tokio::time::timeout(Duration::from_secs(3), hook.lines.recv()).await;
    assert!(more.is_err(), "a further request: {more:?}");
}

/// Pending entries in the outbox file: queued ids without a `done`.
fn outbox_pending(s: &TestServer) -> Vec<Value> {
    let text = std::fs::read_to_string(s.data_dir.path().join("outbox.jsonl")).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    records
        .iter()
        .filter(|r| r["record"] == "queued")
        .filter(|q| {
            !records
                .iter()
                .any(|r| r["record"] == "done" && r["id"] == q["id"])
        })
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_held_by_quiet_hours_survives_a_restart_and_is_sent_once() {
    let mut hook = Peer::start("webhook_receiver.py", &[SECRET, "0"]);
    let port = hook.next().await["port"].as_u64().unwrap();
    // Quiet until 12 s from now (UTC): time to raise the alarm and restart.
    let now = now_ms();
    let quiet_end_ms = (now / 1000 + 12) * 1000;
    let toml = format!(
        "[alarms.quiet_hours]\nstart = \"{}\"\nend = \"{}\"\ntime_zone = \"Etc/UTC\"\n[alarms.webhook]\nurls = [\"http://127.0.0.1:{port}/\"]\nsecret = \"{SECRET}\"\n",
        utc_clock(now - 60_000),
        utc_clock(quiet_end_ms)
    );
    let s = start_alarms(&toml).await;
    s.admit("p1", "mon-1").await;
    // A battery at 10 % raises a low-priority alarm: held, and on disk.
    battery_low_is_held(&s).await;
    let held = outbox_pending(&s);
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["due_ms"], quiet_end_ms);
    assert!(
        now_ms() < quiet_end_ms - 2_000,
        "the machine is too slow for this test's quiet hours"
    );

    // Stopped and started again while the quiet hours last: held again...
    let s = restart_alarms(s, &toml).await;
    assert_eq!(
        metric_reaches(&s, &delivery_metric("webhook", "held"), 1.0).await,
        1.0
    );
    // ...and sent when they end, with the id it was given before the restart.
    let got = hook.next().await;
    assert_eq!(got["status"], 200, "{got}");
    assert_eq!(got["signature_ok"], true, "{got}");
    assert_eq!(got["delivery"], held[0]["id"], "{got}");
    assert_eq!(got["body"]["change"], "raised", "{got}");
    assert_eq!(got["body"]["alarm"]["rule"], "battery-low", "{got}");
    assert_eq!(got["body"]["alarm"]["priority"], "low", "{got}");
    assert!(
        got["received_ms"].as_i64().unwrap() >= quiet_end_ms,
        "{got}"
    );
    // Once: the stopped server's held copy went with it.
    nothing_more(&mut hook).await;
    assert!(outbox_pending(&s).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_refused_before_a_restart_is_delivered_after_it_with_the_same_id() {
    // The receiver is down (503) for the first attempt.
    let mut hook = Peer::start("webhook_receiver.py", &[SECRET, "1"]);
    let port = hook.next().await["port"].as_u64().unwrap();
    // The retry would come 10 to 20 s later: the restart comes first. The
    // ladder's next step is an hour away: only the clock's start matters.
    let toml = format!(
        r#"
[alarms.escalation]
medium = [{{ roles = ["nurse"] }}, {{ after = "1h", roles = ["physician"] }}]
[alarms.webhook]
urls = ["http://127.0.0.1:{port}/medmesh"]
secret = "{SECRET}"
attempts = 6
first_retry = "20s"
"#
    );
    let s = start_alarms(&toml).await;
    s.admit("p1", "mon-1").await;
    pulse(&s, "mon-1", 1.76544e9, 135.0).await;
    let refused = hook.next().await;
    assert_eq!(refused["status"], 503, "{refused}");
    assert_eq!(refused["body"]["change"], "raised", "{refused}");
    // The escalation timer starts the alarm's clock within a second.
    let deadline = tokio::time::Instant::now() + WAIT;
    let clock = loop {
        let (_, alarms) = s.get("/api/v1/alarms").await;
        if let Some(since) = alarms[0]["escalation_since_ms"].as_i64() {
            break since;
        }
        assert!(tokio::time::Instant::now() < deadline, "{alarms}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let s = restart_alarms(s, &toml).await;
    let taken = hook.next().await;
    assert_eq!(taken["status"], 200, "{taken}");
    assert_eq!(taken["signature_ok"], true, "{taken}");
    assert_eq!(
        taken["delivery"], refused["delivery"],
        "receivers de-duplicate on it"
    );
    assert_eq!(taken["body"], refused["body"]);
    assert_eq!(
        metric_reaches(&s, &delivery_metric("webhook", "delivered"), 1.0).await,
        1.0
    );
    nothing_more(&mut hook).await;
    assert!(outbox_pending(&s).is_empty());
    // The escalation clock did not start again: the first climb stays due
    // an hour after the alarm was first seen, not after the restart.
    let (_, alarms) = s.get("/api/v1/alarms").await;
    assert_eq!(alarms[0]["escalation_since_ms"], clock, "{alarms}");
    assert_eq!(alarms[0]["escalation_level"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_goes_to_each_escalation_level_and_to_consented_followers_only() {
    let smtp_port = free_port();
    let mut smtp = Peer::start("smtp_sink.py", &[&smtp_port.to_string(), "1"]);
    assert_eq!(smtp.next().await["ready"], smtp_port);
    // Quiet hours are on right now: medium alarms are never held.
    let now = now_ms();
    // The ward is in New York (EST, UTC-5 in December); its dashboard has
    // a public address.
    let s = start_alarms(&format!(
        r#"
[alarms]
time_zone = "America/New_York"
dashboard_url = "https://medmesh.hospital.test/"
[alarms.escalation]
medium = [
  {{ roles = ["nurse"] }},
  {{ after = "1s", users = ["charge.kim"] }},
  {{ after = "2s", roles = ["physician"] }},
]
[alarms.quiet_hours]
start = "{}"
end = "{}"
utc_offset = "UTC"
[alarms.email]
smtp_url = "smtp://127.0.0.1:{smtp_port}"
from = "medmesh <alarms@medmesh.test>"
first_retry = "100ms"
"#,
        utc_clock(now - 60_000),
        utc_clock(now + 3_600_000)
    ))
    .await;
    admit_named(&s, "p1", "José Núñez", "mon-1").await;
    // Staff: the care team (ward "Test") and the charge nurse, who is not in it.
    clinician(&s, "nurse.ada", medmesh_access::Role::Nurse);
    clinician(&s, "nurse.nomail", medmesh_access::Role::Nurse);
    clinician(&s, "dr.bo", medmesh_access::Role::Physician);
    let users = [
        ("son", "caregiver"),
        ("wife", "caregiver"),
        ("daughter", "caregiver"),
        ("friend", "caregiver"),
        ("insurer", "insurer"),
    ];
    for (name, role) in users {
        let (status, u) = s
            .send(
                Method::POST,
                "/api/v1/users",
                json!({"username": name, "role": role, "email": format!("{name}@family.test")}),
            )
            .await;
        assert_eq!(status, 201, "{u}");
        assert_eq!(u["email"], format!("{name}@family.test"));
    }
    for name in ["nurse.ada", "dr.bo"] {
        let (status, u) = s
            .send(
                Method::PATCH,
                &format!("/api/v1/users/{name}"),
                json!({"email": format!("{name}@hospital.test")}),
            )
            .await;
        assert_eq!(status, 200, "{u}");
    }
    let (status, e) = s
        .send(
            Method::PATCH,
            "/api/v1/users/son",
            json!({"email": "not an address"}),
        )
        .await;
    assert_eq!(status, 400, "{e}");

    // The patient's consents, as an admin may not grant them: straight in the directory.
    let d = &s.running.access.directory;
    let p1 = medmesh_model::PatientId::new("p1").unwrap();
    use medmesh_access::Scope::{Alarms, Observations};
    let grant = |who: &str, scopes: Vec<medmesh_access::Scope>, expires: Option<i64>| {
        d.grant_consent(p1.clone(), who, scopes, "family care", expires, "p1")
            .unwrap()
    };
    let son = grant("son", vec![Alarms], None);
    grant("wife", vec![Alarms, Observations], None);
    grant("daughter", vec![Observations], None);
    grant("friend", vec![Alarms], Some(now_ms() + 500));
    let insurer = grant("insurer", vec![Alarms], None);
    d.revoke_consent(&insurer.id).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await; // the friend's consent expires

    pulse(&s, "mon-1", 1.76544e9, 135.0).await;
    let mut mails: Vec<Value> = Vec::new();
    let mut rejected = 0;
    // Raised: the nurse with an address and both followers in force (one
    // first refused by the server with 451, then retried); level 1 the
    // charge nurse; level 2 the physician.
    while mails.len() < 5 {
        let m = smtp.next().await;
        if m.get("rejected").is_some() {
            rejected += 1;
        } else {
            mails.push(m);
        }
    }
    assert_eq!(rejected, 1);
    // Then the son's consent is revoked and the alarm resolves: only the wife hears.
    d.revoke_consent(&son.id).unwrap();
    pulse(&s, "mon-1", 1.76544e9 + 60.0, 80.0).await;
    mails.push(smtp.next().await);
    assert_eq!(
        metric_reaches(&s, &delivery_metric("email", "delivered"), 6.0).await,
        6.0
    );
    // Anything else would have been sent by now (one send per recipient,
    // all started before the resolution's).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        metric(&s.metrics().await, &delivery_metric("email", "delivered")),
        6.0
    );

    let (_, alarms) = s.get("/api/v1/alarms?state=resolved").await;
    let id = alarms[0]["id"].as_u64().unwrap();
    let link = format!("https://medmesh.hospital.test/#/alarms/{id}");
    let mut message_ids = std::collections::BTreeSet::new();
    let mut got: Vec<(String, String)> = mails
        .iter()
        .map(|m| {
            // Parsed by Python's email package with the strict policy.
            assert!(m.get("parse_error").is_none(), "{m}");
            assert_eq!(m["defects"], json!([]), "{m}");
            assert_eq!(m["from"], "alarms@medmesh.test");
            assert_eq!(
                m["to"].as_array().unwrap().len(),
                1,
                "one message per person"
            );
            let h = &m["headers"];
            assert_eq!(h["mime_version"], "1.0", "{m}");
            assert_eq!(h["content_type"], "text/plain", "{m}");
            assert_eq!(h["charset"], "utf-8", "{m}");
            assert!(h["transfer_encoding"].is_string(), "{m}");
            assert!(h["date"].is_string(), "{m}");
            let message_id = h["message_id"].as_str().unwrap();
            assert!(
                message_id.starts_with('<') && message_id.ends_with("@medmesh.test>"),
                "{m}"
            );
            assert!(message_ids.insert(message_id.to_string()), "repeated {m}");
            let subject = m["subject"].as_str().unwrap();
            let body = m["body"].as_str().unwrap();
            // The name decoded (RFC 2047 in the subject, quoted-printable
            // UTF-8 in the body), the value with its UCUM unit, the raise
            // (2025-12-11T08:00:00Z) on the ward's clock with its offset.
            assert!(subject.contains("José Núñez"), "{subject}");
            assert!(body.contains("José Núñez"), "{body}");
            let resolution = subject.contains("is over");
            if resolution {
                // The reading that cleared it.
                assert!(body.contains("Latest value: 80 /min"), "{body}");
            } else {
                assert!(body.contains("Value: 135 /min"), "{body}");
            }
            assert!(
                body.contains("Raised: 2025-12-11 03:00:00 -05:00 (America/New_York)"),
                "{body}"
            );
            let family = m["to"][0].as_str().unwrap().ends_with("@family.test")
                && !m["to"][0].as_str().unwrap().starts_with("charge.kim");
            let kind = if family {
                // Told the care team is on it, never asked to act.
                assert!(
                    body.contains("You do not need to do anything") || subject.contains("is over"),
                    "{body}"
                );
                for staff_only in ["cknowledge", "/api/", "#/alarms", "Escalation level"] {
                    assert!(!body.contains(staff_only), "{staff_only:?} in {body}");
                }
                if resolution {
                    assert!(
                        body.contains("Resolved: 2025-12-11 03:01:00 -05:00"),
                        "{body}"
                    );
                    "resolved"
                } else {
                    assert_eq!(
                        subject,
                        "[medmesh] Alert for José Núñez: the care team has been alerted"
                    );
                    "raised"
                }
            } else {
                // Asked to acknowledge in the dashboard, by link.
                assert!(
                    body.contains(&format!(
                        "Acknowledge it in the medmesh dashboard: {link}\r\n"
                    )),
                    "{body}"
                );
                assert!(!body.contains("/api/"), "{body}");
                assert!(body.contains("scores 3 on NEWS2"), "{m}");
                assert!(subject.contains("(p1, Test bed 1)"), "{subject}");
                if subject.contains("escalated to level 1") {
                    "level 1"
                } else if subject.contains("escalated to level 2") {
                    "level 2"
                } else {
                    assert!(subject.contains("MEDIUM alarm raised"), "{subject}");
                    "raised"
                }
            };
            (m["to"][0].as_str().unwrap().to_string(), kind.to_string())
        })
        .collect();
    got.sort();
    let want = [
        ("charge.kim@family.test", "level 1"),
        ("dr.bo@hospital.test", "level 2"),
        ("nurse.ada@hospital.test", "raised"),
        ("son@family.test", "raised"),
        ("wife@family.test", "raised"),
        ("wife@family.test", "resolved"),
    ]
    .map(|(a, b)| (a.to_string(), b.to_string()));
    assert_eq!(got, want);
    let m = s.metrics().await;
    assert_eq!(metric(&m, &delivery_metric("email", "retried")), 1.0);
    assert_eq!(metric(&m, &delivery_metric("email", "held")), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_recorded_just_before_a_crash_is_still_sent_after_the_restart() {
    let mut hook = Peer::start("webhook_receiver.py", &[SECRET, "0"]);
    let port = hook.next().await["port"].as_u64().unwrap();
    let toml = format!(
        r#"
[alarms.escalation]
medium = [{{ roles = ["nurse"] }}, {{ after = "1h", roles = ["physician"] }}]
[alarms.webhook]
urls = ["http://127.0.0.1:{port}/medmesh"]
secret = "{SECRET}"
"#
    );
    let s = start_alarms(&toml).await;
    s.admit("p1", "mon-1").await;
    pulse(&s, "mon-1", 1.76544e9, 135.0).await;
    let raised = hook.next().await;
    assert_eq!(raised["body"]["change"], "raised", "{raised}");
    // What a crash leaves behind: a clinician's acknowledgement is in the
    // alarm log (fsynced, numbered), but the process died before the
    // webhook sink took it on.
    let s = restart_alarms_after(s, &toml, |dir| {
        let log = dir.join("alarms.jsonl");
        let lines: Vec<Value> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let last_seq = lines
            .iter()
            .filter_map(|l| l["seq"].as_u64())
            .max()
            .unwrap();
        let mut acknowledged = lines
            .iter()
            .rfind(|l| l["change"] == "raised")
            .unwrap()
            .clone();
        acknowledged["seq"] = json!(last_seq + 1);
        acknowledged["change"] = json!("acknowledged");
        acknowledged["state"] = json!("acknowledged");
        acknowledged["acknowledged"] = json!({"by": "nurse.jones", "at_ms": now_ms()});
        use std::io::Write;
        writeln!(
            std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
            "{acknowledged}"
        )
        .unwrap();
    })
    .await;
    let sent = hook.next().await;
    assert_eq!(sent["status"], 200, "{sent}");
    assert_eq!(sent["body"]["change"], "acknowledged", "{sent}");
    assert_eq!(sent["body"]["alarm"]["id"], raised["body"]["alarm"]["id"]);
    assert_eq!(sent["body"]["alarm"]["acknowledged"]["by"], "nurse.jones");
    // Taken on once: the raise, taken before the crash, is not sent again.
    nothing_more(&mut hook).await;
    let (_, alarms) = s.get("/api/v1/alarms").await;
    assert_eq!(alarms[0]["state"], "acknowledged", "{alarms}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_resumed_after_a_restart_goes_only_to_those_not_yet_mailed() {
    let smtp_port = free_port();
    // Ada's server takes her message; Bea's asks to try again later, and
    // the retry (20 s later) comes after the restart.
    let mut smtp = Peer::start(
        "smtp_sink.py",
        &[&smtp_port.to_string(), "0", "nurse.bea@hospital.test"],
    );
    assert_eq!(smtp.next().await["ready"], smtp_port);
    let toml = format!(
        r#"
[alarms.escalation]
medium = [{{ roles = ["nurse"] }}, {{ after = "1h", roles = ["physician"] }}]
[alarms.email]
smtp_url = "smtp://127.0.0.1:{smtp_port}"
from = "medmesh <alarms@medmesh.test>"
first_retry = "20s"
"#
    );
    let s = start_alarms(&toml).await;
    s.admit("p1", "mon-1").await;
    for name in ["nurse.ada", "nurse.bea"] {
        clinician(&s, name, medmesh_access::Role::Nurse);
        let (status, u) = s
            .send(
                Method::PATCH,
                &format!("/api/v1/users/{name}"),
                json!({"email": format!("{name}@hospital.test")}),
            )
            .await;
        assert_eq!(status, 200, "{u}");
    }
    pulse(&s, "mon-1", 1.76544e9, 135.0).await;
    let mut heard = vec![smtp.next().await, smtp.next().await];
    heard.sort_by_key(|m| m.get("rejected").is_some());
    assert_eq!(
        heard[0]["to"],
        json!(["nurse.ada@hospital.test"]),
        "{heard:?}"
    );
    assert_eq!(
        heard[1]["rejected"],
        json!(["nurse.bea@hospital.test"]),
        "{heard:?}"
    );
    // Ada is noted as served in the outbox before the restart.
    let outbox = s.data_dir.path().join("outbox.jsonl");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(&outbox).unwrap();
        let served = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .any(|r| r["record"] == "sent" && r["to"] == "nurse.ada");
        if served {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(outbox_pending(&s).len(), 1);

    let s = restart_alarms(s, &toml).await;
    let resent = smtp.next().await;
    assert_eq!(resent["to"], json!(["nurse.bea@hospital.test"]), "{resent}");
    assert!(
        resent["subject"]
            .as_str()
            .unwrap()
            .contains("MEDIUM alarm raised"),
        "{resent}"
    );
    nothing_more(&mut smtp).await;
    assert!(outbox_pending(&s).is_empty());
}

#[test]
fn user_add_takes_an_email_and_bad_alarm_config_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let medmesh = env!("CARGO_BIN_EXE_medmesh");
    let add = |email: &str| {
        std::process::Command::new(medmesh)
            .args([
                "user",
                "add",
                "--role",
                "nurse",
                "--email",
                email,
                "--data-dir",
            ])
            .arg(dir.path())
            .arg("charge.kim")
            .output()
            .unwrap()
    };
    let bad = add("kim at ward");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("email"),
        "{bad:?}"
    );
    let ok = add("kim@hospital.test");
    assert!(ok.status.success(), "{ok:?}");
    let access = medmesh_access::Access::open(dir.path()).unwrap();
    assert_eq!(
        access
            .directory
            .user("charge.kim")
            .unwrap()
            .email
            .as_deref(),
        Some("kim@hospital.test")
    );
    drop(access);

    let serve = |flags: &[&str]| {
        std::process::Command::new(medmesh)
            .args([
                "serve",
                "--http-listen",
                "127.0.0.1:0",
                "--mqtt-listen",
                "127.0.0.1:0",
            ])
            .args([
                "--coap-listen",
                "127.0.0.1:0",
                "--hl7-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .args(flags)
            .env_remove("MEDMESH_WEBHOOK_SECRET")
            .output()
            .unwrap()
    };
    for (flags, key) in [
        (
            &["--webhook-url", "http://127.0.0.1:9/x"][..],
            "alarms.webhook.secret",
        ),
        (
            &["--smtp-url", "smtp://127.0.0.1:25"][..],
            "alarms.email.from",
        ),
        (&["--quiet-hours", "22:00"][..], "--quiet-hours"),
        (
            &["--time-zone", "Europe/Londres"][..],
            "alarms.time_zone \"Europe/Londres\"",
        ),
        (
            &["--dashboard-url", "medmesh.local:8080"][..],
            "alarms.dashboard_url",
        ),
        (
            &[
                "--quiet-hours",
                "22:00-07:00",
                "--quiet-hours-utc-offset",
                "CET",
            ][..],
            "utc_offset",
        ),
        (
            &[
                "--quiet-hours",
                "22:00-07:00",
                "--quiet-hours-time-zone",
                "Europe/Londres",
            ][..],
            "\"Europe/Londres\"",
        ),
        (
            &[
                "--quiet-hours",
                "22:00-07:00",
                "--quiet-hours-time-zone",
                "Europe/London",
                "--quiet-hours-utc-offset",
                "+01:00",
            ][..],
            "--quiet-hours-utc-offset",
        ),
    ] {
        let out = serve(flags);
        assert!(!out.status.success(), "{flags:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{flags:?}: {err}");
    }
}

/// Issue "Alarms a ward can trust", deliverable 9: while a webhook retries an
/// alarm's "raised", its "resolved" waits; the receiver gets them in order,
/// each with its change number. Before, the resolution overtook the retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_alarms_webhook_changes_arrive_in_order_with_their_numbers() {
    // The first request (the raise) is refused once.
    let mut hook = Peer::start("webhook_receiver.py", &[SECRET, "1"]);
    let port = hook.next().await["port"].as_u64().unwrap();
    let s = start_alarms(&format!(
        r#"
[alarms.webhook]
urls = ["http://127.0.0.1:{port}/medmesh"]
secret = "{SECRET}"
attempts = 4
first_retry = "500ms"
"#
    ))
    .await;
    s.admit("p1", "mon-1").await;
    // Pulse 135 scores 3 (RCP NEWS2 2017 Chart 1, >= 131), 70 scores 0.
    pulse(&s, "mon-1", 1.76544e9, 135.0).await;
    pulse(&s, "mon-1", 1.76544e9 + 1.0, 70.0).await;
    let requests: Vec<Value> = vec![hook.next().await, hook.next().await, hook.next().await];
    let seen: Vec<(u64, &str)> = requests
        .iter()
        .map(|r| {
            (
                r["status"].as_u64().unwrap(),
                r["body"]["change"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, [(503, "raised"), (200, "raised"), (200, "resolved")]);
    let raised = requests[1]["body"]["seq"]
        .as_u64()
        .expect("seq on the raise");
    let resolved = requests[2]["body"]["seq"]
        .as_u64()
        .expect("seq on the resolution");
    assert!(raised < resolved, "{raised} {resolved}");
}

/// `medmesh_alarm_recipients_unreachable{reason="..."}`.
fn unreachable_metric(reason: &str) -> String {
    format!("medmesh_alarm_recipients_unreachable{{reason=\"{reason}\"}}")
}

/// Issue "Alarms a ward can trust", deliverable 9: a misspelled user in an
/// escalation step and a nurse without an e-mail address used to mean
/// nobody was mailed, silently. Now the raise that reaches nobody is logged
/// and counted, and at the next start each unreachable recipient is a
/// warning line (read from a real `medmesh serve`'s log) and on a metric.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_recipients_are_warned_about_at_start_and_counted() {
    let smtp_port = free_port();
    let mut smtp = Peer::start("smtp_sink.py", &[&smtp_port.to_string(), "0"]);
    assert_eq!(smtp.next().await["ready"], smtp_port);
    let toml = format!(
        r#"
[alarms.escalation]
medium = [{{ roles = ["nurse"] }}, {{ after = "1h", users = ["charge.kym"] }}]
[alarms.email]
smtp_url = "smtp://127.0.0.1:{smtp_port}"
from = "medmesh <alarms@medmesh.test>"
"#
    );
    let s = start_alarms(&toml).await;
    s.admit("p1", "mon-1").await;
    // The ward's only nurse has no e-mail address.
    clinician(&s, "nurse.nomail", medmesh_access::Role::Nurse);
    pulse(&s, "mon-1", now_ms() as f64 / 1000.0, 135.0).await;
    assert_eq!(
        metric_reaches(&s, &delivery_metric("email", "unreachable"), 1.0).await,
        1.0
    );
    assert_eq!(
        metric(&s.metrics().await, &delivery_metric("email", "delivered")),
        0.0
    );

    // At the next start the configuration is checked against the directory.
    let s = restart_alarms(s, &toml).await;
    let m = s.metrics().await;
    assert_eq!(metric(&m, &unreachable_metric("unknown_user")), 1.0, "{m}");
    assert_eq!(metric(&m, &unreachable_metric("no_email")), 1.0, "{m}");
    // Ward "Test": medium level 0 (the nurse) and 1 (the unknown user),
    // and the high and low alarms' default level 0 (the nurse).
    assert_eq!(
        metric(&m, &unreachable_metric("nobody_at_level")),
        3.0,
        "{m}"
    );
    assert_eq!(metric(&m, &unreachable_metric("disabled_user")), 0.0, "{m}");

    // The same, as an operator starting `medmesh serve` sees it.
    let TestServer {
        running, data_dir, ..
    } = s;
    running.stop();
    let config = data_dir.path().join("medmesh.toml");
    std::fs::write(&config, &toml).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_medmesh"))
        .args(["serve", "--http-listen", "127.0.0.1:0"])
        .args([
            "--mqtt-listen",
            "127.0.0.1:0",
            "--coap-listen",
            "127.0.0.1:0",
        ])
        .args(["--hl7-listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(data_dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _child = Child(child);
    let mut warnings = Vec::new();
    for line in std::io::BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if line.contains("medmesh serving") {
            break;
        }
        if line.contains("alarm recipient unreachable") {
            warnings.push(line);
        }
    }
    let warned = |words: &[&str]| {
        assert!(
            warnings
                .iter()
                .any(|l| l.contains("WARN") && words.iter().all(|w| l.contains(w))),
            "{words:?} not in {warnings:#?}"
        )
    };
    warned(&[
        "alarms.escalation.medium[1].users",
        "there is no user \"charge.kym\"",
    ]);
    warned(&["nurse \"nurse.nomail\" has no e-mail address"]);
    warned(&[
        "alarms.escalation.medium[0]",
        "nobody with an e-mail address",
    ]);
    assert_eq!(warnings.len(), 5, "{warnings:#?}");
}

/// Issue "Alarms a ward can trust", deliverable 9: at the end of quiet
/// hours a "raised" mail went out for an alarm already resolved. Now a held
/// raise goes out only if its alarm is still active and unacknowledged;
/// one resolved or acknowledged meanwhile is dropped, and so is the
/// resolution of an alarm nobody was told of.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_end_of_quiet_hours_only_alarms_still_standing_are_mailed() {
    let smtp_port = free_port();
    let mut smtp = Peer::start("smtp_sink.py", &[&smtp_port.to_string(), "0"]);
    assert_eq!(smtp.next().await["ready"], smtp_port);
    // Quiet from a minute ago until 10 s from now (UTC).
    let now = now_ms();
    let quiet_end_ms = (now / 1000 + 10) * 1000;
    let s = start_alarms(&format!(
        r#"
[alarms.quiet_hours]
start = "{}"
end = "{}"
utc_offset = "UTC"
[alarms.email]
smtp_url = "smtp://127.0.0.1:{smtp_port}"
from = "medmesh <alarms@medmesh.test>"
"#,
        utc_clock(now - 60_000),
        utc_clock(quiet_end_ms)
    ))
    .await;
    s.admit("p1", "mon-1").await;
    for device in ["mon-2", "mon-3"] {
        let (status, d) = s
            .send(
                Method::PUT,
                &format!("/api/v1/devices/{device}"),
                json!({"patient_id": "p1"}),
            )
            .await;
        assert_eq!(status, 200, "{d}");
    }
    let nurse = clinician(&s, "nurse.ada", medmesh_access::Role::Nurse);
    let (status, u) = s
        .send(
            Method::PATCH,
            "/api/v1/users/nurse.ada",
            json!({"email": "nurse.ada@hospital.test"}),
        )
        .await;
    assert_eq!(status, 200, "{u}");
    let battery = |device: &'static str, percent: f64| {
        let s = &s;
        async move {
            let (status, report) = s
                .device_post(
                    &format!("/api/v1/devices/{device}/senml"),
                    json!([{"n": "battery", "u": "%EL", "v": percent}]),
                )
                .await;
            assert_eq!(status, 200, "{report}");
        }
    };
    // Three low-priority alarms during quiet hours: mon-1's battery is
    // charged again (resolved), mon-2's is acknowledged, mon-3's stands.
    for device in ["mon-1", "mon-2", "mon-3"] {
        battery(device, 10.0).await;
    }
    battery("mon-1", 80.0).await;
    let (_, alarms) = s.get("/api/v1/alarms").await;
    let mon2 = alarms
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["device_id"] == "mon-2")
        .unwrap_or_else(|| panic!("{alarms}"))["id"]
        .as_u64()
        .unwrap();
    let (status, a) = send_as(
        &nurse,
        Method::POST,
        s.url(&format!("/api/v1/alarms/{mon2}/acknowledge")),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{a}");
    // Three raises and mon-1's resolution held.
    assert_eq!(
        metric_reaches(&s, &delivery_metric("email", "held"), 4.0).await,
        4.0
    );
    assert!(
        now_ms() < quiet_end_ms - 1_000,
        "the machine is too slow for this test's quiet hours"
    );

    // When they end: mon-3's raise, and nothing else.
    let mail = smtp.next().await;
    assert!(mail.get("parse_error").is_none(), "{mail}");
    assert_eq!(mail["to"], json!(["nurse.ada@hospital.test"]), "{mail}");
    let body = mail["body"].as_str().unwrap();
    assert!(body.contains("Device mon-3 battery at 10 %"), "{body}");
    assert!(body.contains("Value: 10 % battery"), "{body}");
    assert_eq!(
        metric_reaches(&s, &delivery_metric("email", "dropped"), 3.0).await,
        3.0
    );
    nothing_more(&mut smtp).await;
    assert!(outbox_pending(&s).is_empty());
}
