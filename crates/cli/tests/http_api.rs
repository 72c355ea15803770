//! The REST API's contract: shapes, ingest over HTTP, and a JSON error with a
//! reason for every bad request.

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_ingest_stores_and_reports_rejected_records() {
    let s = start().await;
    s.admit("p1", "cuff-1").await;
    let body = json!([{"n":"systolic_bp","u":"mmHg","v":128,"bt":1.76544e9},{"n":"diastolic_bp","u":"mmHg","v":81,"bt":1.76544e9},
                      {"n":"systolic_bp","u":"psi","v":2.3}]);
    let (status, report) = s.device_post("/api/v1/devices/cuff-1/senml", body).await;
    assert_eq!(status, 200);
    assert_eq!(report["accepted"], 2);
    assert_eq!(report["rejected"][0]["index"], 2);
    assert!(
        report["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("psi")
    );
    let (_, p) = s.get("/api/v1/patients/p1").await;
    assert_eq!(p["latest"]["systolic_bp"]["value"], 128.0);
    assert_eq!(p["latest"]["systolic_bp"]["unit"], "mm[Hg]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unassigned_devices_are_listed_with_their_data() {
    let s = start().await;
    let body = json!([{"n":"spo2","u":"%","v":95}]);
    let (status, _) = s.device_post("/api/v1/devices/stray-1/senml", body).await;
    assert_eq!(status, 200);
    let (_, devices) = s.get("/api/v1/devices").await;
    assert_eq!(devices[0]["id"], "stray-1");
    assert_eq!(devices[0]["registered"], false);
    assert_eq!(devices[0]["unassigned_latest"]["spo2"]["value"], 95.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_range_query_returns_only_the_window() {
    let s = start().await;
    s.admit("p1", "mon-1").await;
    let records: Vec<_> = (0..10)
        .map(|i| json!({"n":"respiratory_rate","u":"/min","v":12 + i,"t":1.76544e9 + f64::from(i)}))
        .collect();
    s.device_post("/api/v1/devices/mon-1/senml", json!(records))
        .await;
    let (status, body) = s
        .get("/api/v1/patients/p1/observations?code=respiratory_rate&from=1765440003000&to=1765440005000")
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["series"][0]["code"], "9279-1");
    assert_eq!(
        body["series"][0]["points"],
        json!([
            [1765440003000i64, 15.0],
            [1765440004000i64, 16.0],
            [1765440005000i64, 17.0]
        ])
    );
    // Without a code, every vital sign with data in the window.
    let (_, all) = s
        .get("/api/v1/patients/p1/observations?from=1765440000000&to=1765440009000")
        .await;
    assert_eq!(all["series"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_gets_a_json_reason() {
    let s = start().await;
    s.admit("p1", "mon-1").await;
    let cases: Vec<(Method, &str, Option<serde_json::Value>, u16, &str)> = vec![
        (
            Method::GET,
            "/api/v1/patients/nobody",
            None,
            404,
            "no patient",
        ),
        (
            Method::GET,
            "/api/v1/patients/p1/observations?code=lactate",
            None,
            400,
            "unknown code",
        ),
        (
            Method::GET,
            "/api/v1/patients/p1/observations?from=yesterday",
            None,
            400,
            "not a time",
        ),
        (
            Method::GET,
            "/api/v1/patients/p1/observations?from=10&to=5",
            None,
            400,
            "after",
        ),
        (
            Method::GET,
            "/api/v1/patients/p1/observations?colour=red",
            None,
            400,
            "colour",
        ),
        (
            Method::GET,
            "/api/v1/patients/bad%20id",
            None,
            400,
            "patient id",
        ),
        (
            Method::POST,
            "/api/v1/patients",
            Some(json!({"name": "no id"})),
            400,
            "id",
        ),
        (
            Method::POST,
            "/api/v1/patients",
            Some(json!({"id": "p2", "name": " "})),
            400,
            "name is empty",
        ),
        (
            Method::PUT,
            "/api/v1/devices/mon-1",
            Some(json!({"patient_id": "ghost"})),
            400,
            "no patient",
        ),
        (
            Method::POST,
            "/api/v1/devices/mon-1/senml",
            Some(json!({"not": "a pack"})),
            400,
            "SenML",
        ),
        (
            Method::GET,
            "/api/v2/anything",
            None,
            404,
            "no such endpoint",
        ),
    ];
    for (method, path, body, want_status, want_reason) in cases {
        // Device routes as the (anonymous) device: users are refused there.
        let client = if path.ends_with("/senml") {
            reqwest::Client::new()
        } else {
            s.http.clone()
        };
        let mut req = client.request(method.clone(), s.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let json: serde_json::Value = r
            .json()
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: body is not JSON"));
        assert_eq!(status, want_status, "{method} {path}: {json}");
        assert_eq!(json["error"]["status"], want_status, "{method} {path}");
        let reason = json["error"]["reason"].as_str().unwrap();
        assert!(
            reason.contains(want_reason),
            "{method} {path}: {reason:?} lacks {want_reason:?}"
        );
    }
    // A body that is not JSON at all.
    let r = s
        .http
        .post(s.url("/api/v1/patients"))
        .header("content-type", "application/json")
        .body("{{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let json: serde_json::Value = r.json().await.unwrap();
    assert!(json["error"]["reason"].as_str().unwrap().len() > 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_page_and_assets_are_served() {
    let s = start().await;
    for (path, kind, needle) in [
        ("/", "text/html", "/assets/app.js"),
        ("/assets/app.js", "text/javascript", "./js/live.js"),
        ("/assets/js/live.js", "text/javascript", "EventSource"),
        ("/assets/app.css", "text/css", ".tile"),
        (
            "/assets/vendor/uplot/uPlot.iife.min.js",
            "text/javascript",
            "uPlot",
        ),
        ("/assets/vendor/uplot/LICENSE", "text/plain", "MIT License"),
    ] {
        let r = s.http.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind),
            "{path}"
        );
        assert!(r.text().await.unwrap().contains(needle), "{path}");
    }
    let r = s.http.get(s.url("/assets/nope.js")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucketed_series_give_min_max_mean_count() {
    let s = start().await;
    s.admit("p1", "mon-1").await;
    // Two minutes of heart rate at 1 Hz: 60..=119 in the first minute, then 120..=179.
    let records: Vec<_> = (0..120)
        .map(|i| json!({"n":"heart_rate","u":"/min","v":60 + i,"t":1.76544e9 + f64::from(i)}))
        .collect();
    let (status, _) = s
        .device_post("/api/v1/devices/mon-1/senml", json!(records))
        .await;
    assert_eq!(status, 200);
    let (status, body) = s
        .get("/api/v1/patients/p1/observations?code=heart_rate&from=1765440000000&to=1765440119000&bucket=1m")
        .await;
    assert_eq!(status, 200, "{body}");
    let buckets = body["series"][0]["buckets"].as_array().unwrap();
    assert!(body["series"][0].get("points").is_none());
    assert_eq!(buckets.len(), 2);
    // 1765440000000 ms is a whole minute, so buckets start there.
    assert_eq!(
        buckets[0],
        json!({"start_ms": 1765440000000i64, "count": 60, "min": 60.0, "max": 119.0, "mean": 89.5})
    );
    assert_eq!(buckets[1]["min"], 120.0);
    assert_eq!(buckets[1]["count"], 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gatt_values_forwarded_by_a_gateway_are_decoded() {
    let s = start().await;
    s.admit("p1", "cuff-1").await;
    // Blood Pressure Measurement, flags 0x04 (mmHg, pulse present):
    // systolic 128, diastolic 84, MAP 99, pulse 71 (SFLOATs, exponent 0).
    let (status, report) = s
        .device_post(
            "/api/v1/devices/cuff-1/gatt",
            json!({"characteristic": "2A35", "hex": "048000540063004700"}),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 4);
    let (_, p) = s.get("/api/v1/patients/p1").await;
    assert_eq!(p["latest"]["systolic_bp"]["value"], 128.0);
    assert_eq!(p["latest"]["mean_bp"]["code"], "8478-0");
    assert_eq!(p["latest"]["heart_rate"]["value"], 71.0);

    // Weight Measurement in pounds, base64: flags 0x01, 15000 x 0.01 lb = 68.04 kg.
    let (status, report) = s
        .device_post(
            "/api/v1/devices/cuff-1/gatt",
            json!({"characteristic": "weight_measurement", "base64": "AZg6"}),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    let (_, p) = s.get("/api/v1/patients/p1").await;
    let kg = p["latest"]["body_weight"]["value"].as_f64().unwrap();
    assert!((kg - 68.0388555).abs() < 1e-6, "{kg}");
    assert_eq!(p["latest"]["body_weight"]["unit"], "kg");

    // A thermometer reporting NaN: the field rejected, and as nothing else
    // was in the value, 422 (nothing stored).
    let (status, report) = s
        .device_post(
            "/api/v1/devices/cuff-1/gatt",
            json!({"characteristic": "2a1c", "hex": "00ffff7f00"}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(report["accepted"], 0);
    assert!(
        report["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("NaN")
    );

    for (body, want) in [
        (json!({"characteristic": "2a35", "hex": "0480"}), "needs"),
        (json!({"characteristic": "2a35", "hex": "zz"}), "hex"),
        (json!({"characteristic": "2a35", "base64": "%%"}), "base64"),
        (json!({"characteristic": "2a35"}), "exactly one"),
        (
            json!({"characteristic": "2aff", "hex": "00"}),
            "not supported",
        ),
    ] {
        let (status, err) = s
            .device_post("/api/v1/devices/cuff-1/gatt", body.clone())
            .await;
        assert_eq!(status, 400, "{body}");
        let reason = err["error"]["reason"].as_str().unwrap();
        assert!(reason.contains(want), "{body}: {reason}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhir_bundle_built_by_fhir_resources_is_stored_per_patient() {
    let s = start().await;
    s.admit("f1", "bedside-f1").await;
    let out = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/peers/fhir_post.py"
        ))
        .arg(s.url("/api/v1/fhir/Observation"))
        .env("MEDMESH_TOKEN", &s.token)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "fhir.resources (pip install fhir.resources): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    let (status, body) = said.trim().split_once(' ').unwrap();
    assert_eq!(status, "200", "{said}");
    let report: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(report["accepted"], 3);
    assert_eq!(report["rejected"][0]["index"], 2);
    assert!(
        report["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("Patient/nobody")
    );
    let (_, p) = s.get("/api/v1/patients/f1").await;
    assert_eq!(p["latest"]["heart_rate"]["value"], 58.0);
    assert_eq!(p["latest"]["systolic_bp"]["value"], 131.0);
    // 08:31 at +01:00 is 07:31 UTC.
    assert_eq!(p["latest"]["systolic_bp"]["time_ms"], 1_795_591_860_000i64);
    // The device the Observation named is recorded.
    let (_, devices) = s.get("/api/v1/devices").await;
    assert!(
        devices
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == "watch-7"),
        "{devices}"
    );

    let (status, err) = s
        .send(
            Method::POST,
            "/api/v1/fhir/Observation",
            json!({"resourceType": "Patient"}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(err["error"]["reason"].as_str().unwrap().contains("Patient"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_ingest_of_senml_cbor() {
    let s = start().await;
    s.admit("p1", "patch-1").await;
    // [{0: "spo2", 1: "%", 2: 96, -3: 1765440000}]
    let cbor = vec![
        0x81, 0xA4, 0x00, 0x64, b's', b'p', b'o', b'2', 0x01, 0x61, b'%', 0x02, 0x18, 96, 0x22,
        0x1A, 0x69, 0x3A, 0x7A, 0x00,
    ];
    // As the device (anonymous here), not as the administrator.
    let r = reqwest::Client::new()
        .post(s.url("/api/v1/devices/patch-1/senml"))
        .header("content-type", "application/senml+cbor")
        .body(cbor)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, p) = s.get("/api/v1/patients/p1").await;
    assert_eq!(p["latest"]["spo2"]["value"], 96.0);
    // The same bytes announced as JSON are not JSON.
    // As the device (anonymous here), not as the administrator.
    let r = reqwest::Client::new()
        .post(s.url("/api/v1/devices/patch-1/senml"))
        .header("content-type", "application/senml+json")
        .body(vec![0x81, 0xA0])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_moved_to_another_patient_never_mixes_their_data() {
    let s = start().await;
    s.admit("p1", "cuff-1").await;
    let moved_at_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    s.admit("p2", "cuff-1").await; // the cuff goes home with p2
    // The cuff uploads its memory late: a reading taken while with p1, then
    // one taken with p2.
    let (status, r) = s
        .device_post("/api/v1/devices/cuff-1/senml",
            json!([
                {"bn": "cuff-1/", "bt": moved_at_s - 600.0, "n": "heart_rate", "u": "/min", "v": 61},
                {"t": 610.0, "n": "heart_rate", "u": "/min", "v": 92}
            ]),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    let (_, p1) = s.get("/api/v1/patients/p1").await;
    let (_, p2) = s.get("/api/v1/patients/p2").await;
    assert_eq!(p1["latest"]["heart_rate"]["value"], 61.0, "{p1}");
    assert_eq!(p2["latest"]["heart_rate"]["value"], 92.0, "{p2}");
    // The device records both assignments.
    let (_, devices) = s.get("/api/v1/devices").await;
    let cuff = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "cuff-1")
        .unwrap();
    assert_eq!(cuff["patient_id"], "p2");
    let history: Vec<_> = cuff["assignments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["patient_id"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["p1", "p2"]);
}
