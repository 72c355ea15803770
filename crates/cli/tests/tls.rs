//! TLS on the HTTP, MQTT and HL7 (MLLP) listeners, driven by real peers:
//! certificates made by the openssl command, HTTPS by curl, MQTTS by
//! mosquitto_pub (with a token and with a device's client certificate), and
//! MLLP over TLS by Python's ssl module.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA, a server certificate for 127.0.0.1 and a client certificate
/// for device `cuff-1`, all signed by the CA.
fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=medmesh test CA",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (name, cn) in [("server", "localhost"), ("cuff-1", "cuff-1")] {
        openssl(
            dir,
            &[
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.csr"),
                    "-subj",
                    &format!("/CN={cn}"),
                ],
            ]
            .concat(),
        );
        let ext = if name == "server" {
            "server.ext"
        } else {
            "client.ext"
        };
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-extfile",
                ext,
            ],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_http_mqtt_and_mllp_with_token_and_client_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path().to_path_buf();
    make_certificates(&dir);
    let s = start_with(|c| {
        c.tls.cert = Some(dir.join("server.pem"));
        c.tls.key = Some(dir.join("server.key"));
        c.tls.client_ca = Some(dir.join("ca.pem"));
        c.devices.allow_anonymous = Some(false);
        // The MLLP gateway below is a known sender, from this address.
        c.hl7.senders = vec![medmesh_server::Hl7SenderConfig {
            application: "MON".into(),
            facility: "ICU".into(),
            addresses: vec!["127.0.0.1".parse().unwrap()],
        }];
    })
    .await;
    assert!(s.running.tls);
    let ca = dir.join("ca.pem");
    let ca = ca.to_str().unwrap();

    // HTTPS, verified against the CA by curl; plain HTTP on the port fails.
    let https = format!("https://{}", s.running.http_addr);
    let out = Command::new("curl")
        .args([
            "-sS",
            "--cacert",
            ca,
            "-H",
            &format!("Authorization: Bearer {}", s.token),
        ])
        .arg(format!("{https}/api/v1/me"))
        .output()
        .expect("curl is installed");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && body.contains("\"role\":\"admin\""),
        "{body} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("curl")
        .args([
            "-sS",
            "--cacert",
            ca,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-D",
            "-",
        ])
        .args([
            "-H",
            "content-type: application/json",
            "--data",
            "{\"username\":\"admin\",\"password\":\"wrong password\"}",
        ])
        .arg(format!("{https}/api/v1/login"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("401"));
    let plain = Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .arg(format!("http://{}/healthz", s.running.http_addr))
        .output()
        .unwrap();
    assert!(
        !plain.status.success(),
        "plain HTTP must not be served on the TLS port"
    );

    // Session cookies are marked Secure over HTTPS.
    s.running
        .access
        .directory
        .add_user(
            "nurse1",
            medmesh_access::Role::Nurse,
            None,
            "a long test password",
        )
        .unwrap();
    let out = Command::new("curl")
        .args(["-sS", "--cacert", ca, "-D", "-", "-o", "/dev/null"])
        .args([
            "-H",
            "content-type: application/json",
            "--data",
            "{\"username\":\"nurse1\",\"password\":\"a long test password\"}",
        ])
        .arg(format!("{https}/api/v1/login"))
        .output()
        .unwrap();
    let headers = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(
        headers.contains("set-cookie: medmesh_session=") && headers.contains("; secure"),
        "{headers}"
    );

    // MQTTS: a device with its client certificate (no password), and one
    // with a token; a client with neither is refused.
    // (The test's own HTTP client speaks no TLS: set-up goes to the registry.)
    let registry = &s.running.pipeline.registry;
    for (p, d) in [("p1", "cuff-1"), ("p2", "cuff-2")] {
        let id = medmesh_model::PatientId::new(p).unwrap();
        registry
            .upsert_patient(medmesh_model::Patient {
                id: id.clone(),
                name: p.into(),
                ward: "Test".into(),
                bed: String::new(),
            })
            .unwrap();
        registry
            .assign_device(medmesh_model::DeviceId::new(d).unwrap(), Some(id))
            .unwrap();
    }
    let token = registry
        .issue_credential(&medmesh_model::DeviceId::new("cuff-2").unwrap())
        .unwrap();
    let get = |path: &str| -> serde_json::Value {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--cacert",
                ca,
                "-H",
                &format!("Authorization: Bearer {}", s.token),
            ])
            .arg(format!("{https}{path}"))
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let port = s.running.mqtt_addr.port().to_string();
    let pub_ = |extra: Vec<String>, topic_of: &str, value: u32| {
        let mut args: Vec<String> = ["-h", "127.0.0.1", "-p", &port, "--cafile", ca, "-q", "1"]
            .iter()
            .map(|a| a.to_string())
            .collect();
        args.extend(extra);
        args.extend([
            "-t".into(),
            topic(topic_of),
            "-m".into(),
            format!("[{{\"n\":\"heart_rate\",\"u\":\"/min\",\"v\":{value}}}]"),
        ]);
        Command::new("mosquitto_pub")
            .args(&args)
            .output()
            .expect("mosquitto_pub is installed")
    };
    let cert_args = vec![
        "-i".to_string(),
        "cuff-1".into(),
        "--cert".into(),
        dir.join("cuff-1.pem").to_string_lossy().into(),
        "--key".into(),
        dir.join("cuff-1.key").to_string_lossy().into(),
    ];
    let out = pub_(cert_args.clone(), "cuff-1", 71);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = pub_(
        vec![
            "-i".into(),
            "cuff-2".into(),
            "-u".into(),
            "cuff-2".into(),
            "-P".into(),
            token,
        ],
        "cuff-2",
        72,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = pub_(vec![], "cuff-1", 73);
    assert!(
        !out.status.success(),
        "no certificate and no token must be refused"
    );
    // The certificate names cuff-1: it may not publish for cuff-2.
    let out = pub_(
        [cert_args, vec!["-V".into(), "mqttv5".into()]].concat(),
        "cuff-2",
        74,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("may not send as device cuff-2")
            || !out.status.success()
    );
    let p1 = get("/api/v1/patients/p1");
    let p2 = get("/api/v1/patients/p2");
    assert_eq!(p1["latest"]["heart_rate"]["value"], 71.0, "{p1}");
    assert_eq!(p2["latest"]["heart_rate"]["value"], 72.0, "{p2}");

    // MLLP inside TLS: an ORU^R01 for p1 is stored and acknowledged (AA).
    let script = r#"
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
msg = "\r".join([
    "MSH|^~\\&|MON|ICU|MEDMESH|HOSP|20251211080000||ORU^R01|MSG1|P|2.5",
    "PID|||p1",
    "OBX|1|NM|8867-4^Heart rate^LN||66|/min^^UCUM|||||F|||20251211080000",
]) + "\r"
with socket.create_connection(("127.0.0.1", int(sys.argv[2]))) as raw:
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"\x0b" + msg.encode() + b"\x1c\x0d")
        reply = b""
        while not reply.endswith(b"\x1c\x0d"):
            chunk = tls.recv(4096)
            if not chunk:
                break
            reply += chunk
        print(reply.decode(errors="replace"))
"#;
    let out = Command::new("python3")
        .args(["-c", script, ca, &s.running.hl7_addr.port().to_string()])
        .output()
        .unwrap();
    let reply = String::from_utf8_lossy(&out.stdout);
    assert!(
        reply.contains("MSA|AA|MSG1"),
        "{reply} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let series =
        get("/api/v1/patients/p1/observations?code=heart_rate&from=1765440000000&to=1900000000000");
    assert_eq!(series["series"][0]["points"][0][1], 66.0, "{series}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_tls_configuration_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = medmesh_server::Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    config.tls.cert = Some(dir.path().join("server.pem"));
    let err = medmesh_server::Server::start(&config)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("tls.key"), "{err}");
    config.tls.key = Some(dir.path().join("server.key"));
    let err = medmesh_server::Server::start(&config)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("server.pem"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_device_cannot_be_impersonated_where_anonymous_devices_are_allowed() {
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path().to_path_buf();
    make_certificates(&dir);
    // Anonymous devices allowed (the test servers' setting), certificates too.
    let s = start_with(|c| {
        c.tls.cert = Some(dir.join("server.pem"));
        c.tls.key = Some(dir.join("server.key"));
        c.tls.client_ca = Some(dir.join("ca.pem"));
    })
    .await;
    let registry = &s.running.pipeline.registry;
    let p1 = medmesh_model::PatientId::new("p1").unwrap();
    registry
        .upsert_patient(medmesh_model::Patient {
            id: p1.clone(),
            name: "p1".into(),
            ward: "Test".into(),
            bed: String::new(),
        })
        .unwrap();
    registry
        .assign_device(medmesh_model::DeviceId::new("cuff-1").unwrap(), Some(p1))
        .unwrap();
    let ca = dir.join("ca.pem");
    let port = s.running.mqtt_addr.port().to_string();
    let pub_ = |extra: &[&str], value: u32| {
        let out = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port, "-q", "1", "-V", "mqttv5"])
            .arg("--cafile")
            .arg(&ca)
            .args(extra)
            .args(["-t", &topic("cuff-1"), "-m"])
            .arg(format!(
                "[{{\"n\":\"heart_rate\",\"u\":\"/min\",\"v\":{value}}}]"
            ))
            .output()
            .expect("mosquitto_pub is installed");
        let said = String::from_utf8_lossy(&out.stderr).to_lowercase();
        (out.status.success(), said)
    };
    let (cert, key) = (dir.join("cuff-1.pem"), dir.join("cuff-1.key"));
    let (ok, said) = pub_(
        &[
            "-i",
            "cuff-1",
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
        71,
    );
    assert!(ok, "{said}");
    // Without the certificate, under the device's client ID: refused at CONNECT.
    let (ok, said) = pub_(&["-i", "cuff-1"], 190);
    assert!(!ok && said.contains("not authori"), "{said}");
    // Under another client ID, publishing for the device: refused (PUBACK NotAuthorized).
    let (_, said) = pub_(&["-i", "someone"], 190);
    assert!(said.contains("has credentials"), "{said}");
    // Only the device's own reading is stored, and nothing alarms.
    let get = |path: &str| -> serde_json::Value {
        let out = Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(&ca)
            .args(["-H", &format!("Authorization: Bearer {}", s.token)])
            .arg(format!("https://{}{path}", s.running.http_addr))
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let p = get("/api/v1/patients/p1");
    assert_eq!(p["latest"]["heart_rate"]["value"], 71.0, "{p}");
    assert_eq!(get("/api/v1/alarms?patient=p1"), serde_json::json!([]));
}
