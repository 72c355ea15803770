//! Access control end to end: the authorization matrix (every API route
//! with every role, with no credentials and with a revoked token), device
//! impersonation over HTTP, login throttling, consent granted and revoked,
//! and the audit log.

mod common;

use common::*;
use medmesh_access::Role;
use reqwest::Method;
use serde_json::{Value, json};

/// Who calls. The order matters only in that it is the order of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Anonymous,
    Revoked,
    Operations,
    Insurer,
    Researcher,
    Caregiver,
    Patient,
    Nurse,
    Physician,
    Admin,
}
use Who::*;

const EVERYONE: [Who; 10] = [
    Anonymous, Revoked, Operations, Insurer, Researcher, Caregiver, Patient, Nurse, Physician,
    Admin,
];
const SIGNED_IN: &[Who] = &[
    Operations, Insurer, Researcher, Caregiver, Patient, Nurse, Physician, Admin,
];
/// Those who reach p1's readings: its care team, the patient, an admin, and
/// the caregiver and researcher its consents name.
const READ_P1: &[Who] = &[Researcher, Caregiver, Patient, Nurse, Physician, Admin];
const CARE_P1: &[Who] = &[Nurse, Physician, Admin];
/// Charting observations by hand: the care team's clinicians, not admin.
const CHART_P1: &[Who] = &[Nurse, Physician];
/// Those who see p1's alarms: its care team, the patient, an admin, and the
/// caregiver whose consent covers alarms.
const ALARMS_P1: &[Who] = &[Caregiver, Patient, Nurse, Physician, Admin];
const DEVICES: &[Who] = &[Operations, Nurse, Physician, Admin];
const FLEET: &[Who] = &[Operations, Admin];
const ADMIN: &[Who] = &[Admin];
/// No user at all (device routes).
const NOBODY: &[Who] = &[];

struct World {
    s: TestServer,
    clients: Vec<(Who, reqwest::Client)>,
    /// Each monitor's own token: only devices send readings.
    device_tokens: Vec<(&'static str, String)>,
    alarm: u64,
    consent_to_revoke: String,
    researcher_token_id: String,
}

fn pw() -> &'static str {
    "a long test password"
}

/// Ward A (p1, monitor mon-1) has a care team of a nurse and a physician;
/// p2 is on Ward B, which no team here covers. p1's patient account granted
/// the caregiver observations and alarms, the researcher observations only;
/// the insurer holds no consent.
async fn world() -> World {
    let s = start_with(|c| c.devices.allow_anonymous = Some(false)).await;
    for (id, ward, device) in [("p1", "Ward A", "mon-1"), ("p2", "Ward B", "mon-2")] {
        let (st, _) = s
            .send(
                Method::POST,
                "/api/v1/patients",
                json!({"id": id, "name": id, "ward": ward}),
            )
            .await;
        assert_eq!(st, 201);
        let (st, _) = s
            .send(
                Method::PUT,
                &format!("/api/v1/devices/{device}"),
                json!({"patient_id": id}),
            )
            .await;
        assert_eq!(st, 200);
    }
    let mut device_tokens = Vec::new();
    for device in ["mon-1", "mon-2"] {
        let (st, creds) = s
            .send(
                Method::POST,
                &format!("/api/v1/devices/{device}/credentials"),
                json!(null),
            )
            .await;
        assert_eq!(st, 201, "{creds}");
        device_tokens.push((device, creds["password"].as_str().unwrap().to_string()));
    }
    // Pulse 135 scores 3 (RCP NEWS2 Chart 1): an alarm for p1.
    let (st, r) = device_reading(
        &s,
        &device_tokens,
        "mon-1",
        json!([{"n": "heart_rate", "u": "/min", "v": 135, "bt": 1.76544e9}]),
    )
    .await;
    assert_eq!(st, 200, "{r}");
    let (_, alarms) = s.get("/api/v1/alarms").await;
    let alarm = alarms[0]["id"].as_u64().unwrap();

    let d = &s.running.access.directory;
    let p1 = medmesh_model::PatientId::new("p1").unwrap();
    for (name, role) in [
        ("ops", Role::Operations),
        ("insurer", Role::Insurer),
        ("researcher", Role::Researcher),
        ("carer", Role::Caregiver),
        ("nurse", Role::Nurse),
        ("dr", Role::Physician),
        ("leaver", Role::Nurse),
    ] {
        d.add_user(name, role, None, pw()).unwrap();
    }
    d.add_user("pat", Role::Patient, Some(p1.clone()), pw())
        .unwrap();
    d.put_team(medmesh_access::Team {
        id: "ward-a".into(),
        name: "Ward A".into(),
        members: ["nurse".to_string(), "dr".to_string()].into(),
        wards: ["Ward A".to_string()].into(),
        patients: Default::default(),
    })
    .unwrap();
    use medmesh_access::Scope;
    d.grant_consent(
        p1.clone(),
        "carer",
        vec![Scope::Observations, Scope::Alarms],
        "family",
        None,
        "pat",
    )
    .unwrap();
    d.grant_consent(
        p1.clone(),
        "researcher",
        vec![Scope::Observations],
        "COPD study",
        None,
        "pat",
    )
    .unwrap();
    let consent_to_revoke = d
        .grant_consent(
            p1.clone(),
            "carer",
            vec![Scope::Alarms],
            "second opinion",
            None,
            "pat",
        )
        .unwrap()
        .id;
    let token = |user: &str| d.create_token(user, "matrix").unwrap();
    let (revoked, record) = token("nurse");
    d.revoke_token(&record.id).unwrap();
    let (_, researcher_token) = token("researcher");
    let clients = vec![
        (Anonymous, reqwest::Client::new()),
        (Revoked, http_client(&revoked)),
        (Operations, http_client(&token("ops").0)),
        (Insurer, http_client(&token("insurer").0)),
        (Researcher, http_client(&token("researcher").0)),
        (Caregiver, http_client(&token("carer").0)),
        (Patient, http_client(&token("pat").0)),
        (Nurse, http_client(&token("nurse").0)),
        (Physician, http_client(&token("dr").0)),
        (Admin, s.http.clone()),
    ];
    World {
        s,
        clients,
        device_tokens,
        alarm,
        consent_to_revoke,
        researcher_token_id: researcher_token.id,
    }
}

/// `device` sends `pack` over HTTP with its own token.
async fn device_reading(
    s: &TestServer,
    tokens: &[(&'static str, String)],
    device: &str,
    pack: Value,
) -> (u16, Value) {
    let token = &tokens.iter().find(|(d, _)| *d == device).unwrap().1;
    let r = reqwest::Client::new()
        .post(s.url(&format!("/api/v1/devices/{device}/senml")))
        .bearer_auth(token)
        .json(&pack)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

impl World {
    async fn reading(&self, device: &str, pack: Value) -> (u16, Value) {
        device_reading(&self.s, &self.device_tokens, device, pack).await
    }

    fn client(&self, who: Who) -> &reqwest::Client {
        &self.clients.iter().find(|(w, _)| *w == who).unwrap().1
    }

    async fn call(
        &self,
        who: Who,
        method: &Method,
        path: &str,
        body: &Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.client(who).request(method.clone(), self.s.url(path));
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        // The live stream never ends; its status is what counts.
        if path.ends_with("/stream") {
            return (status, Value::Null);
        }
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matrix_every_route_every_role() {
    let w = world().await;
    let alarm = w.alarm;
    let fhir = json!({
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2025-12-11T08:00:00Z",
        "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
    });
    let pack = json!([{"n": "heart_rate", "u": "/min", "v": 70, "bt": 1.76544e9 + 60.0}]);
    // Every route of the API (method, path, body) and who may use it. A
    // route open to callers without credentials lists Anonymous and Revoked.
    let open: &[Who] = &EVERYONE;
    let matrix: Vec<(Method, String, Option<Value>, &[Who])> = vec![
        (Method::GET, "/healthz".into(), None, open),
        (Method::GET, "/".into(), None, open),
        (Method::GET, "/assets/app.js".into(), None, open),
        (Method::GET, "/assets/js/admin.js".into(), None, open),
        (
            Method::GET,
            "/assets/vendor/uplot/uPlot.iife.min.js".into(),
            None,
            open,
        ),
        (Method::GET, "/metrics".into(), None, FLEET),
        (Method::GET, "/api/v1/system/alarms".into(), None, FLEET),
        (Method::GET, "/api/v1/me".into(), None, SIGNED_IN),
        (Method::GET, "/api/v1/patients".into(), None, SIGNED_IN),
        (Method::GET, "/api/v1/patients/p1".into(), None, READ_P1),
        (Method::GET, "/api/v1/patients/p2".into(), None, ADMIN),
        (
            Method::GET,
            "/api/v1/patients/p1/observations".into(),
            None,
            READ_P1,
        ),
        (
            Method::GET,
            "/api/v1/patients/p2/observations".into(),
            None,
            ADMIN,
        ),
        (
            Method::POST,
            "/api/v1/patients".into(),
            Some(json!({"id": "p1", "name": "p1", "ward": "Ward A"})),
            CARE_P1,
        ),
        (
            Method::POST,
            "/api/v1/patients".into(),
            Some(json!({"id": "p2", "name": "p2", "ward": "Ward B"})),
            ADMIN,
        ),
        (Method::GET, "/api/v1/alarms".into(), None, SIGNED_IN),
        (
            Method::GET,
            "/api/v1/alarms?state=resolved".into(),
            None,
            SIGNED_IN,
        ),
        (
            Method::GET,
            "/api/v1/alarms?state=resolved&patient=p1".into(),
            None,
            ALARMS_P1,
        ),
        (
            Method::GET,
            format!("/api/v1/alarms/{alarm}"),
            None,
            ALARMS_P1,
        ),
        (
            Method::POST,
            format!("/api/v1/alarms/{alarm}/acknowledge"),
            Some(json!({})),
            CARE_P1,
        ),
        (
            Method::POST,
            format!("/api/v1/alarms/{alarm}/snooze"),
            Some(json!({"minutes": 5})),
            CARE_P1,
        ),
        (
            Method::POST,
            format!("/api/v1/alarms/{alarm}/resolve"),
            Some(json!({})),
            CARE_P1,
        ),
        (
            Method::GET,
            "/api/v1/patients/p1/alarm-settings".into(),
            None,
            ALARMS_P1,
        ),
        (
            Method::GET,
            "/api/v1/patients/p2/alarm-settings".into(),
            None,
            ADMIN,
        ),
        (
            Method::PUT,
            "/api/v1/patients/p1/alarm-settings".into(),
            Some(json!({"profile": "adult-ward"})),
            CARE_P1,
        ),
        (
            Method::PUT,
            "/api/v1/patients/p2/alarm-settings".into(),
            Some(json!({"profile": "adult-ward"})),
            ADMIN,
        ),
        (
            Method::DELETE,
            "/api/v1/patients/p1/alarm-settings".into(),
            None,
            CARE_P1,
        ),
        (
            Method::GET,
            "/api/v1/alarm-profiles".into(),
            None,
            SIGNED_IN,
        ),
        (Method::GET, "/api/v1/devices".into(), None, DEVICES),
        (
            Method::PUT,
            "/api/v1/devices/mon-1".into(),
            Some(json!({"patient_id": "p1"})),
            DEVICES,
        ),
        (
            Method::PUT,
            "/api/v1/devices/mon-2".into(),
            Some(json!({"patient_id": "p2"})),
            FLEET,
        ),
        (
            Method::POST,
            "/api/v1/devices/spare-1/credentials".into(),
            None,
            FLEET,
        ),
        (
            Method::DELETE,
            "/api/v1/devices/spare-1/credentials".into(),
            None,
            FLEET,
        ),
        (
            Method::POST,
            "/api/v1/devices/mon-1/commands".into(),
            Some(json!({"measure": "bp"})),
            DEVICES,
        ),
        (
            Method::POST,
            "/api/v1/devices/mon-2/commands".into(),
            Some(json!({"measure": "bp"})),
            FLEET,
        ),
        // Device ingest: devices only, never a user's token, whatever the
        // role (checked with device tokens elsewhere).
        (
            Method::POST,
            "/api/v1/devices/mon-1/senml".into(),
            Some(pack.clone()),
            NOBODY,
        ),
        (
            Method::POST,
            "/api/v1/devices/mon-2/senml".into(),
            Some(pack),
            NOBODY,
        ),
        (
            Method::POST,
            "/api/v1/devices/mon-1/gatt".into(),
            Some(json!({"characteristic": "2a37", "hex": "0048"})),
            NOBODY,
        ),
        (
            Method::POST,
            "/api/v1/fhir/Observation".into(),
            Some(fhir),
            CARE_P1,
        ),
        (
            Method::POST,
            "/api/v1/patients/p1/observation-sets".into(),
            Some(json!({"heart_rate": 72, "consciousness": "A"})),
            CHART_P1,
        ),
        (
            Method::POST,
            "/api/v1/patients/p2/observation-sets".into(),
            Some(json!({"heart_rate": 72})),
            &[],
        ),
        (Method::GET, "/api/v1/stream".into(), None, SIGNED_IN),
        (
            Method::GET,
            "/api/v1/patients/p1/consents".into(),
            None,
            &[Patient, Admin],
        ),
        (
            Method::POST,
            "/api/v1/patients/p1/consents".into(),
            Some(json!({"grantee": "carer", "scopes": ["alarms"], "purpose": "claim 7"})),
            &[Patient],
        ),
        (
            Method::DELETE,
            format!("/api/v1/consents/{}", w.consent_to_revoke),
            None,
            &[Patient, Admin],
        ),
        (Method::GET, "/api/v1/consents".into(), None, SIGNED_IN),
        (Method::GET, "/api/v1/tokens".into(), None, SIGNED_IN),
        (
            Method::POST,
            "/api/v1/tokens".into(),
            Some(json!({"name": "script"})),
            SIGNED_IN,
        ),
        (
            Method::DELETE,
            format!("/api/v1/tokens/{}", w.researcher_token_id),
            None,
            &[Researcher, Admin],
        ),
        (Method::GET, "/api/v1/users".into(), None, ADMIN),
        (
            Method::POST,
            "/api/v1/users".into(),
            Some(json!({"username": "new.nurse", "role": "nurse"})),
            ADMIN,
        ),
        (
            Method::PATCH,
            "/api/v1/users/leaver".into(),
            Some(json!({"email": "leaver@example.org"})),
            ADMIN,
        ),
        (Method::DELETE, "/api/v1/users/leaver".into(), None, ADMIN),
        (Method::GET, "/api/v1/teams".into(), None, ADMIN),
        (
            Method::PUT,
            "/api/v1/teams/ward-b".into(),
            Some(json!({"name": "Ward B", "wards": ["Ward B"]})),
            ADMIN,
        ),
        (Method::GET, "/api/v1/audit".into(), None, ADMIN),
        (
            Method::GET,
            "/api/v1/reports/alarm-load".into(),
            None,
            &[Operations, Nurse, Physician, Admin],
        ),
        (
            Method::GET,
            "/api/v1/reports/alarm-load?ward=Ward%20A".into(),
            None,
            &[Operations, Nurse, Physician, Admin],
        ),
        (
            Method::GET,
            "/api/v1/reports/alarm-load?ward=Ward%20B".into(),
            None,
            FLEET,
        ),
        (Method::POST, "/api/v1/logout".into(), None, SIGNED_IN),
    ];
    let mut failures = Vec::new();
    for (method, path, body, allowed) in &matrix {
        // Refused callers go first: a state-changing route is then refused
        // while there is still something to change.
        let (yes, no): (Vec<Who>, Vec<Who>) = EVERYONE.iter().partition(|w| allowed.contains(w));
        for who in no.into_iter().chain(yes) {
            let (status, answer) = w.call(who, method, path, body).await;
            let want_allowed = allowed.contains(&who);
            let ok = if want_allowed {
                status != 401 && status != 403
            } else if matches!(who, Anonymous | Revoked) {
                status == 401
            } else {
                status == 403
            };
            if !ok {
                failures.push(format!(
                    "{method} {path} as {who:?}: {status} (want {}) {answer}",
                    if want_allowed { "allowed" } else { "refused" }
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_and_streams_show_only_what_the_caller_may_see() {
    let w = world().await;
    let ids = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_string())
            .collect()
    };
    for (who, want) in [
        (Admin, vec!["p1", "p2"]),
        (Nurse, vec!["p1"]),
        (Patient, vec!["p1"]),
        (Caregiver, vec!["p1"]),
        (Researcher, vec!["p1"]),
        (Insurer, vec![]),
        (Operations, vec![]),
    ] {
        let (_, list) = w.call(who, &Method::GET, "/api/v1/patients", &None).await;
        assert_eq!(ids(&list), want, "{who:?}");
    }
    // The researcher's consent covers observations, not alarms.
    let (_, list) = w
        .call(Researcher, &Method::GET, "/api/v1/patients", &None)
        .await;
    assert_eq!(list[0]["latest"]["heart_rate"]["value"], 135.0);
    assert_eq!(list[0]["alarms"], json!([]));
    let (_, alarms) = w
        .call(Researcher, &Method::GET, "/api/v1/alarms", &None)
        .await;
    assert_eq!(alarms, json!([]));
    let (_, alarms) = w
        .call(Caregiver, &Method::GET, "/api/v1/alarms", &None)
        .await;
    assert_eq!(alarms[0]["patient_id"], "p1");

    // The live stream: the nurse sees p1's readings but never p2's.
    let mut nurse = w
        .client(Nurse)
        .get(w.s.url("/api/v1/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(nurse.status(), 200);
    let (st, r) = w
        .reading(
            "mon-2",
            json!([{"n": "heart_rate", "u": "/min", "v": 77, "bt": 1.76544e9 + 5.0}]),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    let (st, r) = w
        .reading(
            "mon-1",
            json!([{"n": "heart_rate", "u": "/min", "v": 88, "bt": 1.76544e9 + 6.0}]),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    let mut seen = String::new();
    while !seen.contains("\"p1\"") {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), nurse.chunk())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .expect("stream open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("88"), "{seen}");
    assert!(
        !seen.contains("\"p2\"") && !seen.contains("mon-2"),
        "{seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_send_readings_as_another_over_http() {
    let w = world().await;
    let s = &w.s;
    let (st, creds) = s
        .send(
            Method::POST,
            "/api/v1/devices/mon-1/credentials",
            json!(null),
        )
        .await;
    assert_eq!(st, 201, "{creds}");
    let token = creds["password"].as_str().unwrap().to_string();
    let pack = json!([{"n": "heart_rate", "u": "/min", "v": 99, "bt": 1.76544e9 + 10.0}]);
    let post = |device: &str, auth: Option<(&str, String)>| {
        let mut req = reqwest::Client::new()
            .post(s.url(&format!("/api/v1/devices/{device}/senml")))
            .json(&pack);
        match auth {
            Some(("bearer", t)) => req = req.bearer_auth(t),
            Some((user, t)) => req = req.basic_auth(user, Some(t)),
            None => {}
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    // Its own token, as Bearer and as Basic: accepted.
    assert_eq!(post("mon-1", Some(("bearer", token.clone()))).await, 200);
    assert_eq!(post("mon-1", Some(("mon-1", token.clone()))).await, 200);
    // mon-1's token for mon-2's readings: refused either way, nothing stored.
    assert_eq!(post("mon-2", Some(("bearer", token.clone()))).await, 401);
    assert_eq!(post("mon-2", Some(("mon-1", token.clone()))).await, 403);
    assert_eq!(
        post("mon-1", None).await,
        401,
        "a provisioned device must authenticate"
    );
    assert_eq!(post("mon-1", Some(("bearer", "guess".into()))).await, 401);
    let (_, p2) = s.get("/api/v1/patients/p2").await;
    assert!(p2["latest"].get("heart_rate").is_none(), "{p2}");
    let (_, p1) = s.get("/api/v1/patients/p1").await;
    assert_eq!(p1["latest"]["heart_rate"]["value"], 99.0);
    // Refusals are counted.
    assert!(
        metric(
            &s.metrics().await,
            "medmesh_ingest_refused_messages_total{source=\"http\"}"
        ) >= 4.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_slowed_never_locked_out_and_audited() {
    let w = world().await;
    let s = &w.s;
    let http = reqwest::Client::new();
    // A colleague at another workstation (another loopback address).
    let colleague = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let login = |client: &reqwest::Client, password: &str| {
        let req = client
            .post(s.url("/api/v1/login"))
            .json(&json!({"username": "nurse", "password": password}));
        async move { req.send().await.unwrap() }
    };
    let r = login(&http, pw()).await;
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    for _ in 0..medmesh_access::LOGIN_FREE_PER_ACCOUNT {
        assert_eq!(login(&colleague, "wrong password!!").await.status(), 401);
    }
    // Then the guesser is slowed, and keeps being told to wait a few
    // seconds at most, however often they try.
    let mut retry_after = 0;
    for _ in 0..30 {
        let r = login(&colleague, "wrong password!!").await;
        assert!(matches!(r.status().as_u16(), 401 | 429), "{r:?}");
        if r.status() == 429 {
            retry_after = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap();
            assert!(
                (1..=medmesh_access::LOGIN_MAX_WAIT.as_secs()).contains(&retry_after),
                "{retry_after}"
            );
        }
    }
    assert!(retry_after > 0, "the guesser was slowed");
    // The nurse at her own station signs in at once: nobody locked her out.
    assert_eq!(login(&http, pw()).await.status(), 200);
    // And even at the guesser's station, after the wait the server named,
    // the right password works.
    tokio::time::sleep(std::time::Duration::from_secs(retry_after + 1)).await;
    let mut status = login(&colleague, pw()).await.status().as_u16();
    while status == 429 {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        status = login(&colleague, pw()).await.status().as_u16();
    }
    assert_eq!(status, 200);
    let (_, failed) = s.get("/api/v1/audit?actor=nurse&action=login").await;
    let outcomes: Vec<&str> = failed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    let count = |o: &str| outcomes.iter().filter(|x| **x == o).count();
    assert!(count("failed") >= 3, "{failed}");
    assert!(count("denied") >= 1, "{failed}");
    assert_eq!(count("allowed"), 3, "{failed}");

    // The session cookie works for the browser, and signing out ends it.
    let session = cookie.split(';').next().unwrap().to_string();
    let me = |c: String| {
        let req = http.get(s.url("/api/v1/me")).header("cookie", c);
        async move { req.send().await.unwrap() }
    };
    let r = me(session.clone()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["role"], "nurse");
    let r = http
        .post(s.url("/api/v1/logout"))
        .header("cookie", session.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(me(session).await.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_grants_and_revokes_consent_and_every_read_is_audited() {
    let w = world().await;
    let s = &w.s;
    // The insurer sees nothing of p1 until the patient grants it.
    let (st, _) = w
        .call(
            Insurer,
            &Method::GET,
            "/api/v1/patients/p1/observations",
            &None,
        )
        .await;
    assert_eq!(st, 403);
    let (st, consent) = w
        .call(
            Patient,
            &Method::POST,
            "/api/v1/patients/p1/consents",
            &Some(
                json!({"grantee": "insurer", "scopes": ["observations"], "purpose": "claim 2291"}),
            ),
        )
        .await;
    assert_eq!(st, 201, "{consent}");
    let (st, _) = w
        .call(
            Insurer,
            &Method::GET,
            "/api/v1/patients/p1/observations",
            &None,
        )
        .await;
    assert_eq!(st, 200);
    // Bad grants are refused with reasons.
    for (body, want) in [
        (
            json!({"grantee": "nurse", "scopes": ["alarms"], "purpose": "x"}),
            "caregivers, insurers and researchers",
        ),
        (
            json!({"grantee": "insurer", "scopes": [], "purpose": "x"}),
            "at least one scope",
        ),
        (
            json!({"grantee": "insurer", "scopes": ["alarms"], "purpose": " "}),
            "purpose",
        ),
        (
            json!({"grantee": "insurer", "scopes": ["alarms"], "purpose": "x", "expires_ms": 1}),
            "past",
        ),
    ] {
        let (st, err) = w
            .call(
                Patient,
                &Method::POST,
                "/api/v1/patients/p1/consents",
                &Some(body),
            )
            .await;
        assert_eq!(st, 400, "{err}");
        assert!(
            err["error"]["reason"].as_str().unwrap().contains(want),
            "{err}"
        );
    }
    let id = consent["id"].as_str().unwrap();
    let (st, revoked) = w
        .call(
            Patient,
            &Method::DELETE,
            &format!("/api/v1/consents/{id}"),
            &None,
        )
        .await;
    assert_eq!(st, 200);
    assert!(revoked["revoked_ms"].is_i64());
    let (st, _) = w
        .call(
            Insurer,
            &Method::GET,
            "/api/v1/patients/p1/observations",
            &None,
        )
        .await;
    assert_eq!(st, 403, "revocation takes effect at once");

    // The audit log tells who read p1's data and who was refused.
    let (st, entries) = s.get("/api/v1/audit?patient=p1").await;
    assert_eq!(st, 200);
    let has = |actor: &str, action: &str, outcome: &str| {
        entries
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == actor && e["action"] == action && e["outcome"] == outcome)
    };
    assert!(has("insurer", "read observations", "allowed"), "{entries}");
    assert!(has("insurer", "read observations", "denied"), "{entries}");
    assert!(
        entries
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == "pat" && e["action"].as_str().unwrap().starts_with("consent "))
    );
    // Append-only and chained: the file on disk verifies.
    let text = std::fs::read_to_string(s.data_dir.path().join("audit.jsonl")).unwrap();
    let all: Vec<medmesh_access::AuditEntry> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        all.len() >= entries.as_array().unwrap().len(),
        "{}",
        all.len()
    );
    assert_eq!(medmesh_access::verify_chain(&all), Ok(()));
}

/// Reads `stream` until the server ends it; false if it is still open
/// after a generous bound.
async fn ends(mut stream: reqwest::Response) -> bool {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(deadline, stream.chunk()).await {
            Err(_) => return false,
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) | Ok(Err(_)) => return true,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_end_with_their_session_token_or_user() {
    let w = world().await;
    let s = &w.s;
    let d = &s.running.access.directory;
    let open = |req: reqwest::RequestBuilder| async move {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200);
        r
    };
    let stream_url = s.url("/api/v1/stream");

    // A browser session: signing out ends its stream, not the same user's
    // stream opened with an API token.
    let http = reqwest::Client::new();
    let r = http
        .post(s.url("/api/v1/login"))
        .json(&json!({"username": "nurse", "password": pw()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let session_stream = open(http.get(&stream_url).header("cookie", &cookie)).await;
    let nurse_token = d.create_token("nurse", "station").unwrap().0;
    let mut token_stream = open(http_client(&nurse_token).get(&stream_url)).await;
    let r = http
        .post(s.url("/api/v1/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(ends(session_stream).await, "signed out: the stream ends");
    // The token's stream still carries p1's readings.
    let (st, _) = w
        .reading(
            "mon-1",
            json!([{"n": "heart_rate", "u": "/min", "v": 91, "bt": 1.76544e9 + 7.0}]),
        )
        .await;
    assert_eq!(st, 200);
    let mut seen = String::new();
    while !seen.contains("91") {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), token_stream.chunk())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .expect("the token's stream is still open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }

    // An API token revoked (by an administrator): its stream ends.
    let (dr_token, record) = d.create_token("dr", "pager").unwrap();
    let dr_stream = open(http_client(&dr_token).get(&stream_url)).await;
    let (st, _) = s
        .send(
            Method::DELETE,
            &format!("/api/v1/tokens/{}", record.id),
            Value::Null,
        )
        .await;
    assert_eq!(st, 204);
    assert!(ends(dr_stream).await, "token revoked: the stream ends");

    // A user disabled: every stream of theirs ends, by token or session.
    let carer_token = d.create_token("carer", "tablet").unwrap().0;
    let carer_stream = open(http_client(&carer_token).get(&stream_url)).await;
    let (st, _) = s
        .send(Method::DELETE, "/api/v1/users/carer", Value::Null)
        .await;
    assert!((200..300).contains(&st), "{st}");
    assert!(ends(carer_stream).await, "user disabled: the stream ends");
    // Ending was audited.
    let (_, entries) = s.get("/api/v1/audit?action=live%20stream%20closed").await;
    let actors: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    for who in ["nurse", "dr", "carer"] {
        assert!(actors.contains(&who), "{entries}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_a_caller_may_not_see_get_one_answer_whether_or_not_they_exist() {
    let w = world().await;
    let s = &w.s;
    // An alarm on p2, whom the nurse does not care for.
    let (st, _) = w
        .reading(
            "mon-2",
            json!([{"n": "heart_rate", "u": "/min", "v": 135, "bt": 1.76544e9 + 3.0}]),
        )
        .await;
    assert_eq!(st, 200);
    let (_, alarms) = s.get("/api/v1/alarms?patient=p2").await;
    let p2_alarm = alarms[0]["id"].as_u64().unwrap();
    let never = 987_654_321u64;
    for (who, method, path, body) in [
        (
            Nurse,
            Method::GET,
            format!("/api/v1/alarms/{p2_alarm}"),
            None,
        ),
        (Nurse, Method::GET, format!("/api/v1/alarms/{never}"), None),
        (
            Nurse,
            Method::POST,
            format!("/api/v1/alarms/{p2_alarm}/acknowledge"),
            Some(json!({})),
        ),
        (
            Nurse,
            Method::POST,
            format!("/api/v1/alarms/{never}/acknowledge"),
            Some(json!({})),
        ),
        (
            Insurer,
            Method::DELETE,
            format!("/api/v1/consents/{}", w.consent_to_revoke),
            None,
        ),
        (
            Insurer,
            Method::DELETE,
            "/api/v1/consents/consent-000000000000".to_string(),
            None,
        ),
        (
            Patient,
            Method::DELETE,
            "/api/v1/consents/consent-000000000000".to_string(),
            None,
        ),
        (
            Insurer,
            Method::DELETE,
            "/api/v1/tokens/tok-000000000000".to_string(),
            None,
        ),
    ] {
        let (st, answer) = w.call(who, &method, &path, &body).await;
        assert_eq!(st, 403, "{who:?} {method} {path}: {answer}");
        let reason = answer["error"]["reason"].as_str().unwrap_or("");
        assert!(!reason.contains("no "), "{reason}");
    }
    // An administrator reaches every patient, so absence reveals nothing.
    let (st, _) = s.get(&format!("/api/v1/alarms/{never}")).await;
    assert_eq!(st, 404);
    let (st, _) = s
        .send(
            Method::DELETE,
            "/api/v1/consents/consent-000000000000",
            Value::Null,
        )
        .await;
    assert_eq!(st, 404);
    // The refusals are audited.
    let (_, entries) = s
        .get(&format!("/api/v1/audit?action=read%20alarm%20{never}"))
        .await;
    assert_eq!(entries[0]["actor"], "nurse", "{entries}");
    assert_eq!(entries[0]["outcome"], "denied", "{entries}");
    let (_, entries) = s.get("/api/v1/audit?patient=p2&actor=nurse").await;
    assert!(
        entries
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == format!("read alarm {p2_alarm}") && e["outcome"] == "denied"),
        "{entries}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_post_cannot_act_and_every_response_has_security_headers() {
    let w = world().await;
    let s = &w.s;
    let http = reqwest::Client::new();
    let r = http
        .post(s.url("/api/v1/login"))
        .json(&json!({"username": "nurse", "password": pw()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let own = format!("http://{}", s.running.http_addr);
    let snooze = |origin: Option<&str>, site: Option<&str>, content_type: &str| {
        let mut req = http
            .post(s.url(&format!("/api/v1/alarms/{}/snooze", w.alarm)))
            .header("cookie", &cookie)
            .body(r#"{"minutes": 1440}"#);
        // "" for a body of no declared type (a script's untyped blob).
        if !content_type.is_empty() {
            req = req.header("content-type", content_type);
        }
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        if let Some(x) = site {
            req = req.header("sec-fetch-site", x);
        }
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // What a page elsewhere can make a browser send.
    for (origin, site, content_type) in [
        (Some("http://evil.example"), None, "text/plain"),
        (
            Some("http://evil.example"),
            Some("cross-site"),
            "text/plain",
        ),
        (None, Some("cross-site"), "application/json"),
        (Some("http://evil.example"), None, "application/json"),
        (None, None, "text/plain"),
        (None, None, "application/x-www-form-urlencoded"),
        (None, None, ""),
        (Some("null"), None, "text/plain"),
    ] {
        let (st, body) = snooze(origin, site, content_type).await;
        assert_eq!(st, 403, "{origin:?} {site:?} {content_type}: {body}");
        assert!(body.contains("cross-site"), "{body}");
    }
    let (_, alarm) = s.get(&format!("/api/v1/alarms/{}", w.alarm)).await;
    assert!(alarm["alarm"]["snoozed_until_ms"].is_null(), "{alarm}");
    let (_, refused) = s.get("/api/v1/audit?action=cross-site%20request").await;
    assert_eq!(refused.as_array().unwrap().len(), 8, "{refused}");
    assert!(
        refused[0]["detail"].as_str().unwrap().contains("/snooze"),
        "{refused}"
    );
    // The dashboard itself (same origin, JSON) may.
    let (st, body) = snooze(Some(&own), Some("same-origin"), "application/json").await;
    assert_eq!(st, 200, "{body}");
    let (_, alarm) = s.get(&format!("/api/v1/alarms/{}", w.alarm)).await;
    assert!(alarm["alarm"]["snoozed_until_ms"].is_i64(), "{alarm}");

    // Security headers on pages, API answers and errors alike.
    for (path, auth) in [
        ("/", false),
        ("/api/v1/me", true),
        ("/api/v1/me", false),
        ("/nowhere", false),
    ] {
        let req = http.get(s.url(path));
        let req = if auth {
            req.header("cookie", &cookie)
        } else {
            req
        };
        let r = req.send().await.unwrap();
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
    }
}
