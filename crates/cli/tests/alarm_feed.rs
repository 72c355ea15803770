//! The alarm feed over MQTT for integration accounts (issue 12, item 3):
//! a nurse-call system signs in with an API token holding the `alarm-feed`
//! scope and hears its care teams' patients' alarms, and nobody else's;
//! everything else that tries to reach the alarms is refused. Real MQTT
//! clients (rumqttc 3.1.1 and 5, Mosquitto's `mosquitto_sub`) against a real
//! server; readings over HTTP as devices send them.

mod common;

use common::*;
use reqwest::Method;
use rumqttc::{AsyncClient, LastWill, QoS};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

const ALL_ALARMS: &str = "medmesh/v1/alarms/+";

/// An account signed in to the feed as client `client_id`, subscribed to
/// `filters` (each granted).
async fn feed(
    addr: SocketAddr,
    client_id: &str,
    username: &str,
    token: &str,
    filters: &[&str],
) -> (AsyncClient, UnboundedReceiver<String>) {
    let (c, mut events) = mqtt_events_client(addr, client_id, |o| {
        o.set_credentials(username, token);
    })
    .await;
    assert_eq!(next_event(&mut events).await, "connack");
    for f in filters {
        c.subscribe(*f, QoS::AtLeastOnce).await.unwrap();
        assert_eq!(
            next_event(&mut events).await,
            "suback [Success(AtLeastOnce)]",
            "{f}"
        );
    }
    (c, events)
}

/// The alarm changes heard until `patient`'s `vital` alarm is raised
/// (that one included): each as (patient, vital, change).
async fn heard_until(
    events: &mut UnboundedReceiver<String>,
    patient: &str,
    vital: &str,
) -> Vec<(String, String, String)> {
    let mut heard = Vec::new();
    loop {
        let said = next_event(events).await;
        let Some(rest) = said.strip_prefix("publish ") else {
            panic!("expected an alarm, got {said}");
        };
        let (topic, body) = rest.split_once(' ').unwrap();
        let body: Value = serde_json::from_str(body).unwrap();
        let alarm = &body["alarm"];
        let p = alarm["patient_id"].as_str().unwrap().to_string();
        assert_eq!(topic, format!("medmesh/v1/alarms/{p}"));
        let v = alarm["vital"].as_str().unwrap_or("").to_string();
        let change = body["change"].as_str().unwrap().to_string();
        let done = p == patient && v == vital && change == "raised";
        heard.push((p, v, change));
        if done {
            return heard;
        }
    }
}

fn now_s() -> f64 {
    medmesh_model::now_ms() as f64 / 1000.0
}

/// A red NEWS2 reading of `vital` (scores 3: one alarm per vital sign).
async fn red(s: &TestServer, device: &str, vital: &str) {
    let (unit, value) = match vital {
        "heart_rate" => ("/min", 190.0),
        "spo2" => ("%", 85.0),
        "respiratory_rate" => ("/min", 30.0),
        "systolic_bp" => ("mm[Hg]", 85.0),
        other => panic!("no red reading for {other}"),
    };
    let pack =
        json!([{"bn": format!("{device}/"), "bt": now_s(), "n": vital, "u": unit, "v": value}]);
    let (status, report) = s
        .device_post(&format!("/api/v1/devices/{device}/senml"), pack)
        .await;
    assert_eq!(status, 200, "{report}");
}

/// Admits `id` to `ward` with monitor `device`.
async fn admit(s: &TestServer, id: &str, ward: &str, device: &str) {
    let (st, body) = s
        .send(
            Method::POST,
            "/api/v1/patients",
            json!({"id": id, "name": format!("Patient {id}"), "ward": ward, "bed": "1"}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let (st, body) = s
        .send(
            Method::PUT,
            &format!("/api/v1/devices/{device}"),
            json!({"patient_id": id}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
}

/// Sets care team `id` to cover `wards`, with `members`.
async fn team(s: &TestServer, id: &str, members: &[&str], wards: &[&str]) {
    let (st, body) = s
        .send(
            Method::PUT,
            &format!("/api/v1/teams/{id}"),
            json!({"name": id, "members": members, "wards": wards}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
}

/// Adds the nurse-call account `username` (an administrator creates it),
/// and creates its tokens through the API as the account itself: one with
/// `scopes`; returns that token and its id.
async fn account_token(s: &TestServer, username: &str, scopes: Value) -> (String, String) {
    if s.running.access.directory.user(username).is_none() {
        let (st, body) = s
            .send(
                Method::POST,
                "/api/v1/users",
                json!({"username": username, "role": "nurse", "password": "a long test password"}),
            )
            .await;
        assert_eq!(st, 201, "{body}");
    }
    let (own, _) = s
        .running
        .access
        .directory
        .create_token(username, "set-up")
        .unwrap();
    let (st, created) = send_as(
        &http_client(&own),
        Method::POST,
        s.url("/api/v1/tokens"),
        json!({"name": "nurse call", "scopes": scopes}),
    )
    .await;
    assert_eq!(st, 201, "{created}");
    (
        created["token"].as_str().unwrap().to_string(),
        created["id"].as_str().unwrap().to_string(),
    )
}

/// The audit entries of `actor`, oldest first, as "action outcome detail".
async fn audited(s: &TestServer, actor: &str) -> Vec<String> {
    let (st, entries) = s.get(&format!("/api/v1/audit?actor={actor}")).await;
    assert_eq!(st, 200, "{entries}");
    let mut lines: Vec<String> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{} {} {}", e["action"], e["outcome"], e["detail"]))
        .collect();
    lines.reverse();
    lines
}

fn has(lines: &[String], parts: &[&str]) -> bool {
    lines
        .iter()
        .any(|l| parts.iter().all(|part| l.contains(part)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nurse_call_token_hears_its_wards_alarms_and_no_other_wards() {
    let s = start().await;
    admit(&s, "a1", "Ward A", "mon-a1").await;
    admit(&s, "b1", "Ward B", "mon-b1").await;
    let (token, _) = account_token(&s, "nursecall-a", json!(["alarm-feed"])).await;
    team(&s, "ward-a", &["nursecall-a"], &["Ward A"]).await;
    // Every alarm topic, and the other ward's patient named outright: the
    // filter is granted, the policy still decides each message.
    let (_feed, mut heard) = feed(
        s.running.mqtt_addr,
        "nursecall-a-pager",
        "nursecall-a",
        &token,
        &[ALL_ALARMS, "medmesh/v1/alarms/b1"],
    )
    .await;

    // Ward B's alarm is raised first, then Ward A's: the feed's first
    // alarm is Ward A's, so Ward B's never reached it (the broker sends one
    // session's messages in the order they were published).
    red(&s, "mon-b1", "heart_rate").await;
    red(&s, "mon-a1", "heart_rate").await;
    let first = heard_until(&mut heard, "a1", "heart_rate").await;
    assert!(first.iter().all(|(p, ..)| p == "a1"), "{first:?}");

    // The care team takes Ward B on: from the next alarm on, it is heard.
    team(&s, "ward-a", &["nursecall-a"], &["Ward A", "Ward B"]).await;
    red(&s, "mon-b1", "spo2").await;
    // Ward A's next alarm after it, so that whatever else that reading
    // raised (the NEWS2 total) is heard before the team changes again.
    red(&s, "mon-a1", "spo2").await;
    let both = heard_until(&mut heard, "a1", "spo2").await;
    assert!(
        both.contains(&("b1".into(), "spo2".into(), "raised".into())),
        "{both:?}"
    );
    // And gives it back: no more of Ward B.
    team(&s, "ward-a", &["nursecall-a"], &["Ward A"]).await;
    red(&s, "mon-b1", "respiratory_rate").await;
    red(&s, "mon-a1", "respiratory_rate").await;
    let after = heard_until(&mut heard, "a1", "respiratory_rate").await;
    assert!(after.iter().all(|(p, ..)| p == "a1"), "{after:?}");

    // Mosquitto's own client, with the same credentials, hears Ward A only.
    let addr = s.running.mqtt_addr;
    let mut sub = tokio::process::Command::new("mosquitto_sub")
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(["-u", "nursecall-a", "-P", &token, "-q", "1", "-C", "1"])
        .args(["-t", ALL_ALARMS, "-t", "medmesh/v1/alarms/b1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("mosquitto_sub runs");
    // Until its subscription is in place alarms go unheard: keep raising and
    // resolving Ward B's pulse alarm, then Ward A's. The one message it
    // takes must be Ward A's.
    let mut rounds = 0;
    let got = loop {
        for pulse in [190.0, 70.0] {
            for device in ["mon-b1", "mon-a1"] {
                let pack = json!([{"bt": now_s(), "n": "heart_rate", "u": "/min", "v": pulse}]);
                let (st, _) = s
                    .device_post(&format!("/api/v1/devices/{device}/senml"), pack)
                    .await;
                assert_eq!(st, 200);
            }
        }
        if let Ok(status) = tokio::time::timeout(Duration::from_millis(200), sub.wait()).await {
            assert!(status.unwrap().success());
            break sub.wait_with_output().await.unwrap();
        }
        rounds += 1;
        assert!(rounds < 100, "mosquitto_sub heard nothing");
    };
    let line: Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(line["alarm"]["patient_id"], "a1", "{line}");

    // Audited: the sign-in, each subscription with its filter.
    let lines = audited(&s, "nursecall-a").await;
    assert!(
        has(
            &lines,
            &["MQTT alarm feed connect", "allowed", "nursecall-a-pager"]
        ),
        "{lines:#?}"
    );
    assert!(
        has(
            &lines,
            &[
                "MQTT alarm feed subscribe",
                "allowed",
                "medmesh/v1/alarms/+"
            ]
        ),
        "{lines:#?}"
    );
    assert!(
        has(
            &lines,
            &[
                "MQTT alarm feed subscribe",
                "allowed",
                "medmesh/v1/alarms/b1"
            ]
        ),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_alarm_feed_token_reaches_the_alarms_and_only_under_them() {
    // Anonymous devices on, as in the demo: still no alarms for them.
    let s = start().await;
    admit(&s, "a1", "Ward A", "mon-a1").await;
    let addr = s.running.mqtt_addr;
    let (api_token, _) = account_token(&s, "nursecall-a", json!(["api"])).await;
    let (token, _) = account_token(&s, "nursecall-a", json!(["alarm-feed"])).await;
    team(&s, "ward-a", &["nursecall-a"], &["Ward A"]).await;

    // A token without the scope is no MQTT credential at all.
    let (_, mut events) = mqtt_events_client(addr, "no-scope", |o| {
        o.set_credentials("nursecall-a", api_token.as_str());
    })
    .await;
    let said = next_event(&mut events).await;
    assert!(said.contains("NotAuthorized"), "{said}");
    // Nor is the feed's token under another user's name, or a made-up one.
    for (user, password) in [("admin", token.as_str()), ("nursecall-a", "mm_made_up")] {
        let (_, mut events) = mqtt_events_client(addr, "guess", |o| {
            o.set_credentials(user, password);
        })
        .await;
        let said = next_event(&mut events).await;
        assert!(said.starts_with("closed"), "{user}: {said}");
    }
    // The feed's token does not open the REST API.
    let r = http_client(&token)
        .get(s.url("/api/v1/patients"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // An anonymous client and a device with credentials: SUBACK failure
    // (0x80) on every alarm topic, even one patient named outright.
    let (status, issued) = s
        .send(
            Method::POST,
            "/api/v1/devices/mon-a1/credentials",
            json!(null),
        )
        .await;
    assert_eq!(status, 201, "{issued}");
    let device_token = issued["password"].as_str().unwrap().to_string();
    let (anonymous, mut anon_events) = mqtt_events_client(addr, "nurse-call-display", |_| {}).await;
    assert_eq!(next_event(&mut anon_events).await, "connack");
    let (device, mut device_events) = mqtt_events_client(addr, "mon-a1", |o| {
        o.set_credentials("mon-a1", device_token.as_str());
    })
    .await;
    assert_eq!(next_event(&mut device_events).await, "connack");
    for filter in [
        "medmesh/v1/alarms/a1",
        ALL_ALARMS,
        "medmesh/v1/alarms/#",
        "#",
    ] {
        anonymous.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        assert_eq!(
            next_event(&mut anon_events).await,
            "suback [Failure]",
            "{filter}"
        );
        device.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        assert_eq!(
            next_event(&mut device_events).await,
            "suback [Failure]",
            "{filter}"
        );
    }

    // The account: alarm topics only, and no `#` (not even under them).
    let (account, mut events) = feed(addr, "pager", "nursecall-a", &token, &[]).await;
    for filter in [
        "#",
        "medmesh/#",
        "medmesh/v1/alarms/#",
        "+/v1/alarms/+",
        "medmesh/v1/devices/mon-a1/commands",
        "medmesh/v1/devices/+/senml",
    ] {
        account.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        assert_eq!(
            next_event(&mut events).await,
            "suback [Failure]",
            "{filter}"
        );
    }
    // A device's command reaches no account.
    let (st, delivery) = s
        .send(
            Method::POST,
            "/api/v1/devices/mon-a1/commands",
            json!("check"),
        )
        .await;
    assert_eq!(st, 202, "{delivery}");
    assert_eq!(delivery["delivered"], 0, "{delivery}");

    // Every refusal is audited on the account's record.
    let lines = audited(&s, "nursecall-a").await;
    assert!(
        has(
            &lines,
            &["MQTT alarm feed connect", "denied", "no alarm-feed scope"]
        ),
        "{lines:#?}"
    );
    assert!(
        has(
            &lines,
            &["MQTT alarm feed connect", "denied", "not \\\"admin\\\"'s"]
        ),
        "{lines:#?}"
    );
    for filter in ["medmesh/v1/alarms/#", "medmesh/v1/devices/mon-a1/commands"] {
        assert!(
            has(&lines, &["MQTT alarm feed subscribe", "denied", filter]),
            "{filter}: {lines:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_feed_account_publishes_nothing() {
    let s = start().await;
    admit(&s, "a1", "Ward A", "mon-a1").await;
    let addr = s.running.mqtt_addr;
    let (token, _) = account_token(&s, "nursecall-a", json!(["alarm-feed"])).await;
    team(&s, "ward-a", &["nursecall-a"], &["Ward A"]).await;

    // Not even a will.
    let (_, mut events) = mqtt_events_client(addr, "with-will", |o| {
        o.set_credentials("nursecall-a", token.as_str());
        o.set_last_will(LastWill::new("lab/gone", "bye", QoS::AtLeastOnce, false));
    })
    .await;
    let said = next_event(&mut events).await;
    assert!(said.contains("NotAuthorized"), "{said}");

    // MQTT 3.1.1 can only acknowledge: acknowledged, nothing stored, and a
    // forged alarm change reaches no subscriber (not even itself).
    let (account, mut events) = feed(addr, "pager", "nursecall-a", &token, &[ALL_ALARMS]).await;
    let reading = json!([{"bt": now_s(), "n": "heart_rate", "u": "/min", "v": 190}]).to_string();
    account
        .publish(topic("mon-a1"), QoS::AtLeastOnce, false, reading.clone())
        .await
        .unwrap();
    assert_eq!(next_event(&mut events).await, "puback");
    account
        .publish(
            "medmesh/v1/alarms/a1",
            QoS::AtLeastOnce,
            false,
            r#"{"change":"resolved"}"#,
        )
        .await
        .unwrap();
    assert_eq!(next_event(&mut events).await, "puback");
    // MQTT 5 is told: not authorized.
    use rumqttc::v5::mqttbytes::v5::Packet as Packet5;
    let mut opts = rumqttc::v5::MqttOptions::new("nursecall-5", addr.ip().to_string(), addr.port());
    opts.set_credentials("nursecall-a", token.as_str());
    let (v5, mut eventloop) = rumqttc::v5::AsyncClient::new(opts, 10);
    v5.publish(
        topic("mon-a1"),
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        false,
        reading,
    )
    .await
    .unwrap();
    let ack = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::v5::Event::Incoming(Packet5::PubAck(ack))) => {
                    return format!("{:?}", ack.reason);
                }
                Ok(_) => {}
                Err(e) => return e.to_string(),
            }
        }
    })
    .await
    .unwrap();
    assert!(ack.contains("NotAuthorized"), "{ack}");

    // Nothing was stored for the patient, no alarm raised: the first alarm
    // the feed hears is the real one a real reading raises.
    let (_, p) = s.get("/api/v1/patients/a1").await;
    assert!(p["latest"].get("heart_rate").is_none(), "{p}");
    let (_, alarms) = s.get("/api/v1/alarms?patient=a1").await;
    assert_eq!(alarms, json!([]));
    red(&s, "mon-a1", "spo2").await;
    let said = next_event(&mut events).await;
    assert!(said.starts_with("publish medmesh/v1/alarms/a1 "), "{said}");
    assert!(
        said.contains("\"seq\"") && said.contains("\"raised\""),
        "{said}"
    );
    let lines = audited(&s, "nursecall-a").await;
    assert!(
        has(
            &lines,
            &["MQTT publish", "denied", "medmesh/v1/devices/mon-a1/senml"]
        ),
        "{lines:#?}"
    );
    assert!(
        has(&lines, &["MQTT publish", "denied", "medmesh/v1/alarms/a1"]),
        "{lines:#?}"
    );
    assert!(
        has(&lines, &["MQTT alarm feed connect", "denied", "will"]),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_the_token_or_disabling_the_user_closes_the_feed_at_once() {
    let s = start().await;
    admit(&s, "a1", "Ward A", "mon-a1").await;
    let addr = s.running.mqtt_addr;
    let (token, id) = account_token(&s, "nursecall-a", json!(["alarm-feed"])).await;
    team(&s, "ward-a", &["nursecall-a"], &["Ward A"]).await;

    // A second token of the same account keeps its own connection.
    let (other, _) = account_token(&s, "nursecall-a", json!(["alarm-feed"])).await;
    let (_keep, mut kept) = feed(addr, "pager-2", "nursecall-a", &other, &[ALL_ALARMS]).await;

    let (_feed, mut events) = feed(addr, "pager-1", "nursecall-a", &token, &[]).await;
    let (st, _) = s
        .send(Method::DELETE, &format!("/api/v1/tokens/{id}"), Value::Null)
        .await;
    assert_eq!(st, 204);
    let said = next_event(&mut events).await;
    assert!(said.starts_with("closed"), "revoked: {said}");
    // And it does not sign in again.
    let (_, mut again) = mqtt_events_client(addr, "again", |o| {
        o.set_credentials("nursecall-a", token.as_str());
    })
    .await;
    let said = next_event(&mut again).await;
    assert!(
        said.starts_with("closed") && !said.contains("connack"),
        "{said}"
    );
    // The other token's feed still hears its ward.
    red(&s, "mon-a1", "heart_rate").await;
    let heard = heard_until(&mut kept, "a1", "heart_rate").await;
    assert!(!heard.is_empty());

    // The user disabled: every feed of theirs closes.
    let (st, _) = s
        .send(Method::DELETE, "/api/v1/users/nursecall-a", Value::Null)
        .await;
    assert_eq!(st, 204);
    let said = next_event(&mut kept).await;
    assert!(said.starts_with("closed"), "disabled: {said}");

    let lines = audited(&s, "nursecall-a").await;
    assert!(
        has(&lines, &["MQTT alarm feed closed", "allowed", "revoked"]),
        "{lines:#?}"
    );
    assert!(
        has(&lines, &["MQTT alarm feed connect", "denied", "revoked"]),
        "{lines:#?}"
    );
}
