//! One device identity on every protocol (issue 12): each finding of the
//! attack on the MQTT listener is replayed here with real MQTT clients
//! (rumqttc, 3.1.1 and 5), and the outcome a clinician relies on is
//! checked: nothing stored for the patient, no alarm, nothing leaked.

mod common;

use common::*;
use rumqttc::{LastWill, QoS};
use serde_json::{Value, json};
use std::time::Duration;

/// A tachycardia a monitor would alarm on.
const PACK: &str = r#"[{"n":"heart_rate","u":"/min","v":190}]"#;

/// Issues `device` its token through the API.
async fn credentials(s: &TestServer, device: &str) -> String {
    let (status, issued) = s
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/devices/{device}/credentials"),
            json!(null),
        )
        .await;
    assert_eq!(status, 201, "{issued}");
    issued["password"].as_str().unwrap().to_string()
}

async fn command(s: &TestServer, device: &str, body: Value) -> Value {
    let (status, delivery) = s
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/devices/{device}/commands"),
            body,
        )
        .await;
    assert_eq!(status, 202, "{delivery}");
    delivery
}

/// Nothing stored for `patient` and no alarm raised for them.
async fn untouched(s: &TestServer, patient: &str) {
    let (_, p) = s.get(&format!("/api/v1/patients/{patient}")).await;
    assert!(p["latest"].get("heart_rate").is_none(), "{p}");
    let (_, alarms) = s.get(&format!("/api/v1/alarms?patient={patient}")).await;
    assert_eq!(alarms, json!([]), "no alarm for {patient}");
}

fn refused(metrics: &str) -> f64 {
    metric(
        metrics,
        "medmesh_ingest_refused_messages_total{source=\"mqtt\"}",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_credentials_may_not_publish_for_a_device_that_has_them() {
    // Even where anonymous devices are allowed (the demo).
    let s = start().await;
    s.admit("p1", "mon-1").await;
    credentials(&s, "mon-1").await;
    let addr = s.running.mqtt_addr;

    // MQTT 3.1.1, under another client ID: acknowledged (3.1.1 has no way
    // to refuse a publish) but not stored.
    let (intruder, mut events) = mqtt_events_client(addr, "intruder", |_| {}).await;
    assert_eq!(next_event(&mut events).await, "connack");
    intruder
        .publish(topic("mon-1"), QoS::AtLeastOnce, false, PACK)
        .await
        .unwrap();
    assert_eq!(next_event(&mut events).await, "puback");

    // MQTT 5: the PUBACK says NotAuthorized (rumqttc reports a failure
    // reason code as an event-loop error).
    use rumqttc::v5::mqttbytes::v5::Packet as Packet5;
    let (v5, mut eventloop) = rumqttc::v5::AsyncClient::new(
        rumqttc::v5::MqttOptions::new("intruder-5", addr.ip().to_string(), addr.port()),
        10,
    );
    v5.publish(
        topic("mon-1"),
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        false,
        PACK,
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

    untouched(&s, "p1").await;
    assert!(refused(&s.metrics().await) >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_with_credentials_cannot_be_impersonated_by_client_id() {
    let s = start().await;
    s.admit("p1", "mon-1").await;
    let token = credentials(&s, "mon-1").await;
    let addr = s.running.mqtt_addr;
    // The device, connected and listening for its commands.
    let (device, mut events) = mqtt_events_client(addr, "mon-1", |o| {
        o.set_credentials("mon-1", token.as_str());
    })
    .await;
    assert_eq!(next_event(&mut events).await, "connack");
    device
        .subscribe(
            medmesh_sources::mqtt::command_topic("mon-1"),
            QoS::AtLeastOnce,
        )
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut events).await,
        "suback [Success(AtLeastOnce)]"
    );

    // No credentials, the device's client ID: refused at CONNECT.
    let (_, mut impostor) = mqtt_events_client(addr, "mon-1", |_| {}).await;
    let said = next_event(&mut impostor).await;
    assert!(said.contains("NotAuthorized"), "{said}");
    // The device kept its session: its command still reaches it.
    assert_eq!(command(&s, "mon-1", json!("check")).await["delivered"], 1);
    assert_eq!(
        next_event(&mut events).await,
        "publish medmesh/v1/devices/mon-1/commands \"check\""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_devices_are_off_unless_allowed_explicitly() {
    // The product's default, whatever the address: nothing set.
    let s = start_with(|c| c.devices.allow_anonymous = None).await;
    s.admit("p1", "mon-1").await;
    let (_, mut events) = mqtt_events_client(s.running.mqtt_addr, "mon-1", |_| {}).await;
    let said = next_event(&mut events).await;
    assert!(said.contains("NotAuthorized"), "{said}");
    // HTTP and CoAP say the same.
    let r = reqwest::Client::new()
        .post(s.url("/api/v1/devices/mon-1/senml"))
        .json(&serde_json::from_str::<Value>(PACK).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    untouched(&s, "p1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_reach_only_the_clients_own_topics() {
    let s = start().await;
    s.admit("p1", "mon-1").await;
    let token = credentials(&s, "mon-1").await;
    let addr = s.running.mqtt_addr;

    // Anonymous: everything, every alarm, another device's commands: refused.
    let (snoop, mut events) = mqtt_events_client(addr, "snoop", |_| {}).await;
    assert_eq!(next_event(&mut events).await, "connack");
    for filter in [
        "#",
        "medmesh/v1/alarms/#",
        "medmesh/v1/devices/+/commands",
        "medmesh/v1/devices/mon-2/commands",
    ] {
        snoop.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        assert_eq!(
            next_event(&mut events).await,
            "suback [Failure]",
            "{filter}"
        );
    }
    // So a command for mon-2 reaches no one.
    assert_eq!(
        command(&s, "mon-2", json!("factory-reset")).await["delivered"],
        0
    );

    // A device with credentials: its own topics only.
    let (device, mut events) = mqtt_events_client(addr, "mon-1", |o| {
        o.set_credentials("mon-1", token.as_str());
    })
    .await;
    assert_eq!(next_event(&mut events).await, "connack");
    device
        .subscribe("medmesh/v1/devices/mon-2/commands", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert_eq!(next_event(&mut events).await, "suback [Failure]");
    device.subscribe("#", QoS::AtLeastOnce).await.unwrap();
    assert_eq!(next_event(&mut events).await, "suback [Failure]");
    device
        .subscribe("medmesh/v1/devices/mon-1/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut events).await,
        "suback [Success(AtLeastOnce)]"
    );
    assert!(refused(&s.metrics().await) >= 6.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_will_may_not_speak_for_another_device_or_the_alarms() {
    let s = start().await;
    s.admit("p1", "mon-1").await;
    s.admit("p2", "mon-2").await;
    let token = credentials(&s, "mon-1").await;
    let addr = s.running.mqtt_addr;
    let forged = [
        ("medmesh/v1/devices/mon-2/commands", "\"factory-reset\""),
        ("medmesh/v1/alarms/p1", r#"{"change":"resolved"}"#),
    ];
    for (topic, payload) in forged {
        // With the device's credentials, and without any.
        let (_, mut events) = mqtt_events_client(addr, "mon-1", |o| {
            o.set_credentials("mon-1", token.as_str());
            o.set_last_will(LastWill::new(topic, payload, QoS::AtLeastOnce, false));
        })
        .await;
        let said = next_event(&mut events).await;
        assert!(said.contains("NotAuthorized"), "{topic}: {said}");
        let (_, mut events) = mqtt_events_client(addr, "anyone", |o| {
            o.set_last_will(LastWill::new(topic, payload, QoS::AtLeastOnce, false));
        })
        .await;
        let said = next_event(&mut events).await;
        assert!(said.contains("NotAuthorized"), "{topic}: {said}");
    }
    // A will on the device's own topics is its own business.
    let (_, mut events) = mqtt_events_client(addr, "mon-1", |o| {
        o.set_credentials("mon-1", token.as_str());
        o.set_last_will(LastWill::new(
            "medmesh/v1/devices/mon-1/status",
            "offline",
            QoS::AtLeastOnce,
            false,
        ));
    })
    .await;
    assert_eq!(next_event(&mut events).await, "connack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_or_replacing_credentials_closes_the_devices_session_at_once() {
    let s = start().await;
    s.admit("p1", "mon-1").await;
    let addr = s.running.mqtt_addr;
    for replace in [true, false] {
        let token = credentials(&s, "mon-1").await;
        let (_, mut events) = mqtt_events_client(addr, "mon-1", |o| {
            o.set_credentials("mon-1", token.as_str());
        })
        .await;
        assert_eq!(next_event(&mut events).await, "connack");
        if replace {
            credentials(&s, "mon-1").await;
        } else {
            let r = s
                .http
                .delete(s.url("/api/v1/devices/mon-1/credentials"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 204);
        }
        let said = next_event(&mut events).await;
        assert!(said.starts_with("closed"), "replace {replace}: {said}");
    }
}
