//! The protocols the simulator speaks besides MQTT, each as a small
//! request/response client that waits for the server's acknowledgement.

use coap_lite::{
    CoapOption, ContentFormat, MessageClass, MessageType, Packet, RequestType, ResponseType,
};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How a simulated device delivers its readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// SenML JSON over MQTT (QoS as configured).
    Mqtt,
    /// SenML JSON in confirmable CoAP POSTs.
    Coap,
    /// SenML JSON in HTTP POSTs.
    Http,
    /// HL7 v2 ORU^R01 over MLLP, as a bedside-monitor gateway.
    Hl7,
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Protocol, String> {
        match s {
            "mqtt" => Ok(Protocol::Mqtt),
            "coap" => Ok(Protocol::Coap),
            "http" => Ok(Protocol::Http),
            "hl7" => Ok(Protocol::Hl7),
            other => Err(format!("protocol {other:?}: use mqtt, coap, http or hl7")),
        }
    }
}

/// CoAP (RFC 7252) confirmable POSTs, retransmitted with exponential
/// back-off (ACK_TIMEOUT 2 s, MAX_RETRANSMIT 4) until acknowledged.
pub(crate) struct CoapSender {
    socket: UdpSocket,
    next_id: u16,
}

impl CoapSender {
    pub(crate) async fn connect(server: SocketAddr) -> Result<CoapSender, String> {
        let bind: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .expect("literal");
        let socket = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
        socket.connect(server).await.map_err(|e| e.to_string())?;
        Ok(CoapSender {
            socket,
            next_id: rand::random(),
        })
    }

    pub(crate) async fn post(&mut self, device: &str, payload: Vec<u8>) -> Result<(), String> {
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        let mut p = Packet::new();
        p.header.set_type(MessageType::Confirmable);
        p.header.code = MessageClass::Request(RequestType::Post);
        p.header.message_id = id;
        p.set_token(id.to_be_bytes().to_vec());
        for seg in ["medmesh", "v1", "devices", device, "senml"] {
            p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
        }
        p.set_content_format(ContentFormat::ApplicationSenmlJSON);
        p.payload = payload;
        let bytes = p.to_bytes().map_err(|e| format!("{e:?}"))?;
        let mut timeout = Duration::from_secs(2);
        let mut buf = [0u8; 1500];
        for _ in 0..5 {
            self.socket.send(&bytes).await.map_err(|e| e.to_string())?;
            let deadline = tokio::time::Instant::now() + timeout;
            while let Ok(r) = tokio::time::timeout_at(deadline, self.socket.recv(&mut buf)).await {
                let n = r.map_err(|e| e.to_string())?;
                let Ok(answer) = Packet::from_bytes(&buf[..n]) else {
                    continue;
                };
                if answer.header.message_id != id {
                    continue;
                }
                return match answer.header.code {
                    MessageClass::Response(ResponseType::Changed | ResponseType::Created) => Ok(()),
                    other => Err(format!(
                        "CoAP {other:?}: {}",
                        String::from_utf8_lossy(&answer.payload)
                    )),
                };
            }
            timeout *= 2;
        }
        Err("CoAP POST not acknowledged after 4 retransmissions".into())
    }
}

/// HTTP POSTs of SenML to the REST API.
pub(crate) struct HttpSender {
    client: reqwest::Client,
    base: String,
}

impl HttpSender {
    pub(crate) fn new(server: SocketAddr) -> HttpSender {
        HttpSender {
            client: reqwest::Client::new(),
            base: format!("http://{server}/api/v1/devices"),
        }
    }

    pub(crate) async fn post(&self, device: &str, payload: Vec<u8>) -> Result<(), String> {
        let r = self
            .client
            .post(format!("{}/{device}/senml", self.base))
            .header("content-type", "application/senml+json")
            .body(payload)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", r.status()))
        }
    }
}

/// One MLLP connection; each message waits for its ACK.
pub(crate) struct Hl7Sender {
    server: SocketAddr,
    stream: Option<TcpStream>,
}

impl Hl7Sender {
    pub(crate) fn new(server: SocketAddr) -> Hl7Sender {
        Hl7Sender {
            server,
            stream: None,
        }
    }

    pub(crate) async fn send(&mut self, message: Vec<u8>) -> Result<(), String> {
        if self.stream.is_none() {
            self.stream = Some(
                TcpStream::connect(self.server)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        let stream = self.stream.as_mut().expect("connected above");
        let mut framed = Vec::with_capacity(message.len() + 3);
        framed.push(0x0B);
        framed.extend_from_slice(&message);
        framed.extend_from_slice(&[0x1C, 0x0D]);
        let result = async {
            stream.write_all(&framed).await.map_err(|e| e.to_string())?;
            let mut ack = Vec::new();
            let mut buf = [0u8; 1024];
            while !ack.ends_with(&[0x1C, 0x0D]) {
                let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("connection closed before the ACK".to_string());
                }
                ack.extend_from_slice(&buf[..n]);
            }
            let text = String::from_utf8_lossy(&ack);
            if text.contains("MSA|AA|") {
                Ok(())
            } else {
                Err(format!(
                    "HL7 ACK: {}",
                    text.trim_matches(['\u{b}', '\u{1c}', '\r'])
                ))
            }
        }
        .await;
        if result.is_err() {
            // Reconnect next time rather than read a stale ACK.
            self.stream = None;
        }
        result
    }
}
