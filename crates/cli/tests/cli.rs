//! The `medmesh` binary as a user runs it.

mod common;

use common::{Child as Guard, spawn_serve_full, wait_for_line};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_medmesh");

/// Every listener flag of `serve`.
const LISTENERS: [&str; 4] = [
    "--http-listen",
    "--mqtt-listen",
    "--coap-listen",
    "--hl7-listen",
];

/// `medmesh serve` on `data_dir` with every listener on an ephemeral
/// loopback port, except those `taken` (which the caller sets).
fn serve(data_dir: &std::path::Path, taken: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.arg("serve").arg("--data-dir").arg(data_dir);
    for flag in LISTENERS.iter().filter(|f| !taken.contains(f)) {
        command.args([flag, "127.0.0.1:0"]);
    }
    command
}

/// Runs a future to completion on a fresh single-threaded runtime.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

#[test]
fn a_port_in_use_is_one_clear_line_naming_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    for flag in ["--mqtt-listen", "--http-listen"] {
        let out = serve(dir.path(), &[flag])
            .args([flag, &format!("127.0.0.1:{port}")])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = stderr
            .lines()
            .find(|l| l.starts_with("error:"))
            .expect("an error line");
        assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
        assert!(line.contains("in use"), "{line}");
        assert!(line.contains(flag), "{line}");
    }
    // The CoAP listener is UDP: a UDP port in use.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let taken = udp.local_addr().unwrap().to_string();
    let out = serve(dir.path(), &["--coap-listen"])
        .args(["--coap-listen", &taken])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .expect("an error line");
    assert!(
        line.contains(&taken) && line.contains("--coap-listen"),
        "{line}"
    );
}

#[test]
fn a_bad_retention_flag_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = serve(dir.path(), &[])
        .args(["--retention", "lactate=1day"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .expect("an error line");
    assert!(
        line.contains("lactate") && line.contains("heart_rate"),
        "{line}"
    );
}

#[test]
fn a_bad_config_file_names_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("medmesh.toml");
    std::fs::write(&cfg, "[http]\nlisten = \"127.0.0.1:0\"\nport = 9\n").unwrap();
    let out = Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("medmesh.toml") && stderr.contains("port"),
        "{stderr}"
    );
}

fn get_json(token: &str, url: &str) -> serde_json::Value {
    block_on(async {
        common::http_client(token)
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
}

#[test]
fn demo_shows_a_live_ward_and_accepts_mosquitto_pub() {
    let dir = tempfile::tempdir().unwrap();
    let token = common::provision_admin(dir.path());
    let mut child = Command::new(BIN)
        .args([
            "demo",
            "--http-listen",
            "127.0.0.1:0",
            "--mqtt-listen",
            "127.0.0.1:0",
            "--coap-listen",
            "127.0.0.1:0",
            "--hl7-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _guard = Guard(child);
    let mut lines = BufReader::new(stderr).lines();
    let http = wait_for_line(&mut lines, "dashboard  http://");
    let http = http.split("http://").nth(1).unwrap().trim().to_string();
    // The demo allows anonymous devices (the product does not) and says so.
    wait_for_line(&mut lines, "anonymous devices ALLOWED");
    let mqtt = wait_for_line(&mut lines, "MQTT ");
    let mqtt = mqtt.split_whitespace().nth(1).unwrap().to_string();
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});

    // Within seconds every patient has live vitals, and they change.
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        let list = get_json(&token, &format!("http://{http}/api/v1/patients"));
        let with_vitals = list
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["latest"]["heart_rate"].is_object())
            .count();
        if with_vitals >= 20 {
            break list;
        }
        assert!(
            Instant::now() < deadline,
            "ward not live after 20 s: {list}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(first.as_array().unwrap().len() >= 20);
    std::thread::sleep(Duration::from_millis(1500));
    let later = get_json(&token, &format!("http://{http}/api/v1/patients"));
    assert_ne!(
        first[0]["latest"]["heart_rate"]["time_ms"],
        later[0]["latest"]["heart_rate"]["time_ms"]
    );

    // The demo exercises the alarm rules: a home COPD patient on SpO2
    // scale 2 and oxygen, device batteries (some low: an alarm), and the
    // deteriorating patients on the adult-ward profile.
    let copd = get_json(
        &token,
        &format!("http://{http}/api/v1/patients/home-002/alarm-settings"),
    );
    assert_eq!(copd["settings"]["profile"], "home-copd", "{copd}");
    assert_eq!(copd["settings"]["spo2_scale"], 2, "{copd}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let home = get_json(&token, &format!("http://{http}/api/v1/patients/home-002"));
        let devices = get_json(&token, &format!("http://{http}/api/v1/devices"));
        let alarms = get_json(&token, &format!("http://{http}/api/v1/alarms"));
        let on_oxygen = home["latest"]["oxygen_flow"]["value"].as_f64().is_some();
        let batteries = devices
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["battery_percent"].is_number())
            .count();
        let battery_low = alarms
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["rule"] == "battery-low");
        if on_oxygen && batteries >= 10 && battery_low {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no oxygen, batteries or battery-low alarm after 20 s: {home} {devices} {alarms}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A reading published with mosquitto_pub lands on the patient. It is
    // dated a second ago (the simulator's own readings soon stand as
    // "latest", so it is looked up in the patient's series by its time; a
    // reading dated in the future would be refused).
    let (host, port) = mqtt.rsplit_once(':').unwrap();
    let t_ms = medmesh_model::now_ms() - 1_000;
    let pack = format!(
        r#"[{{"n":"body_temperature","u":"Cel","v":39.9,"bt":{}}}]"#,
        t_ms as f64 / 1000.0
    );
    let status = Command::new("mosquitto_pub")
        .args([
            "-h",
            host,
            "-p",
            port,
            "-q",
            "1",
            "-t",
            "medmesh/v1/devices/ward-a-bed-001/senml",
        ])
        .args(["-m", &pack])
        .status()
        .expect("mosquitto_pub is installed");
    assert!(status.success());
    let series = get_json(
        &token,
        &format!(
            "http://{http}/api/v1/patients/ward-a-001/observations?code=body_temperature&from={t_ms}&to={t_ms}"
        ),
    );
    assert_eq!(
        series["series"][0]["points"][0],
        serde_json::json!([t_ms, 39.9]),
        "{series}"
    );
}

#[test]
fn simulate_speaks_every_protocol_and_everything_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let token = common::provision_admin(dir.path());
    let (_server, a) = spawn_serve_full(dir.path(), &[]);
    let out = Command::new(BIN)
        .args(["simulate", "--protocol", "mqtt,coap,http,hl7"])
        .args([
            "--broker",
            &a.mqtt.to_string(),
            "--coap",
            &a.coap.to_string(),
        ])
        .args(["--http", &a.http.to_string(), "--hl7", &a.hl7.to_string()])
        .args(["--devices", "20", "--rate", "5", "--duration", "6"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("samples (") && stderr.contains("acknowledged"),
        "{stderr}"
    );
    let done = stderr
        .lines()
        .find(|l| l.starts_with("done:"))
        .expect("summary line");
    // done: N messages, M samples, A acknowledged, E connection errors
    let nums: Vec<u64> = done
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let (messages, samples, acked, errors) = (nums[0], nums[1], nums[2], nums[3]);
    assert!(messages >= 20 * 5 * 4, "{done}");
    assert_eq!(samples, messages * 6);
    assert_eq!((acked, errors), (messages, 0), "{done}");

    // Every protocol delivered its share: 5 devices each.
    let metrics = reqwest_blocking_text(&token, &format!("http://{}/metrics", a.http));
    let stored = |source: &str| -> u64 {
        let prefix = format!("medmesh_ingest_samples_stored_total{{source=\"{source}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map_or(0, |v| v.parse().unwrap())
    };
    let per: Vec<u64> = ["mqtt", "coap", "http", "hl7"]
        .iter()
        .map(|p| stored(p))
        .collect();
    assert!(per.iter().all(|n| *n > 0), "{per:?}");
    assert_eq!(per.iter().sum::<u64>(), samples, "{per:?}");
}

fn reqwest_blocking_text(token: &str, url: &str) -> String {
    block_on(async {
        common::http_client(token)
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
}

#[test]
fn first_start_creates_an_admin_once_and_user_add_manages_accounts() {
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir().unwrap();
    // `medmesh user add` with the password on stdin, then `user list`.
    let mut add = Command::new(BIN)
        .args(["user", "add", "--role", "nurse", "--data-dir"])
        .arg(dir.path())
        .arg("nurse.kim")
        .arg("--password-stdin")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(add.stdin.take().unwrap(), "kim's long password").unwrap();
    let out = add.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("added nurse.kim (nurse)"));
    let out = Command::new(BIN)
        .args(["user", "add", "--role", "patient", "--data-dir"])
        .arg(dir.path())
        .arg("pat")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a patient account needs --patient"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("patient id"));
    let out = Command::new(BIN)
        .args(["user", "list", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("nurse.kim"));

    // Users exist, so the first start creates no admin.
    drop(spawn_serve_full(dir.path(), &[]));
    let out = Command::new(BIN)
        .args(["user", "list", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("admin"));
    let fresh = tempfile::tempdir().unwrap();
    let mut child = serve(fresh.path(), &[])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let _guard = Guard(child);
    let password = wait_for_line(&mut lines, "password:")
        .split("password:")
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    let serving = wait_for_line(&mut lines, "medmesh serving:");
    let http = serving
        .split("http://")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    std::thread::spawn(move || for _ in lines {});
    let status = |password: String| {
        block_on(async {
            reqwest::Client::new()
                .post(format!("http://{http}/api/v1/login"))
                .json(&serde_json::json!({"username": "admin", "password": password}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    assert_eq!(
        status(password.clone()),
        200,
        "the printed one-time password signs in"
    );
    assert_eq!(status(format!("{password}x")), 401);
}

/// Every file under `dir` and `dir` itself with its permission bits.
#[cfg(unix)]
fn modes(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, u32)>) {
    use std::os::unix::fs::PermissionsExt;
    out.push((
        dir.to_path_buf(),
        dir.metadata().unwrap().permissions().mode() & 0o777,
    ));
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            modes(&e.path(), out);
        } else {
            out.push((e.path(), e.metadata().unwrap().permissions().mode() & 0o777));
        }
    }
}

#[cfg(unix)]
#[test]
fn a_live_data_directory_is_locked_and_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Written world-readable beforehand (access.json with the password
    // hashes), as an older version left it.
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let token = common::provision_admin(&data);
    std::fs::set_permissions(
        data.join("access.json"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let (server, addrs) = spawn_serve_full(&data, &[]);
    let pid = server.0.id();
    // A patient admitted, so the registry is written too.
    let status = block_on(async {
        common::http_client(&token)
            .post(format!("http://{}/api/v1/patients", addrs.http))
            .json(
                &serde_json::json!({"id": "p1", "name": "Patient p1", "ward": "Test", "bed": "1"}),
            )
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status.as_u16(), 201);

    // A second server on the same directory is refused, naming the first.
    let out = serve(&data, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("in use") && stderr.contains(&format!("process id {pid}")),
        "{stderr}"
    );
    // So is an offline account change, and nothing is written.
    let add = || {
        Command::new(BIN)
            .args(["user", "add", "--role", "nurse", "--data-dir"])
            .arg(&data)
            .arg("night.nurse")
            .output()
            .unwrap()
    };
    let out = add();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("process id {pid}")), "{stderr}");
    assert!(stderr.contains("/api/v1/users"), "{stderr}");

    // Nothing the server wrote is readable by anyone else.
    let mut found = Vec::new();
    modes(&data, &mut found);
    let names: Vec<String> = found
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in ["access.json", "audit.jsonl", "LOCK", "wal", "registry.json"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    for (path, mode) in &found {
        let want = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{} is {mode:o}", path.display());
    }

    // The lock ends with the process, however it ends (here SIGKILL).
    drop(server);
    let out = add();
    assert!(out.status.success(), "{out:?}");
}
