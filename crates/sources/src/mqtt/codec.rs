//! A version-neutral view of the MQTT packets the broker side handles.
//!
//! The session logic is the same for MQTT 3.1.1 and 5; only the bytes differ.
//! This module converts `rumqttc`'s per-version packet types to and from the
//! small [`Inbound`] / [`Outbound`] vocabulary the session uses.

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::{self as m4, v4};
use rumqttc::v5::mqttbytes::{self as m5, v5};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    V311,
    V5,
}

#[derive(Debug)]
pub(crate) enum Inbound {
    Connect {
        client_id: String,
        keep_alive_s: u16,
        /// The client asks to resume (and keep) its session: MQTT 3.1.1
        /// clean session 0, MQTT 5 clean start 0 with a session expiry.
        persistent: bool,
        will: Option<Will>,
        /// User name and password, if the client sent them.
        login: Option<(String, String)>,
    },
    Publish {
        topic: Result<String, String>,
        qos: u8,
        pkid: u16,
        payload: Bytes,
    },
    PubRel {
        pkid: u16,
    },
    Subscribe {
        pkid: u16,
        /// Topic filters with their requested QoS.
        filters: Vec<(String, u8)>,
    },
    Unsubscribe {
        pkid: u16,
        filters: Vec<String>,
    },
    /// The client acknowledges a QoS 1 message we delivered.
    PubAck {
        pkid: u16,
    },
    PingReq,
    Disconnect,
    /// A packet only a broker sends, or one the session ignores.
    Unexpected(&'static str),
}

/// A client's last will: published by the broker if the client goes away
/// without a DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Will {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
}

/// What one SUBSCRIBE filter got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Granted {
    Qos(u8),
    /// Not a valid filter.
    InvalidFilter,
    /// A valid filter the client may not use.
    NotAuthorized,
}

/// Why a publish was not taken, in the words each version can express.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AckReason {
    Success,
    /// Accepted, but some records were rejected (told in MQTT 5 only).
    PartlyAccepted(String),
    PayloadFormatInvalid(String),
    TopicNameInvalid(String),
    /// An authenticated device published for another device.
    NotAuthorized(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outbound {
    ConnAckAccepted {
        session_present: bool,
    },
    ConnAckUnsupportedVersion,
    /// Wrong user name or password.
    ConnAckBadCredentials,
    /// No credentials where they are required.
    ConnAckNotAuthorized,
    PubAck {
        pkid: u16,
        reason: AckReason,
    },
    PubRec {
        pkid: u16,
        reason: AckReason,
    },
    PubComp {
        pkid: u16,
    },
    /// What each filter got, in the SUBSCRIBE's order.
    SubAck {
        pkid: u16,
        granted: Vec<Granted>,
    },
    UnsubAck {
        pkid: u16,
        filters: usize,
    },
    /// A message delivered to a subscriber.
    Publish {
        topic: String,
        payload: Bytes,
        qos: u8,
        pkid: u16,
        dup: bool,
    },
    PingResp,
}

#[derive(Debug)]
pub(crate) enum CodecError {
    /// Not MQTT 3.1.1 or 5 (e.g. MQTT 3.1, "MQIsdp").
    UnsupportedVersion(String),
    Malformed(String),
}

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodecError::UnsupportedVersion(s) => write!(f, "unsupported MQTT version: {s}"),
            CodecError::Malformed(s) => write!(f, "malformed MQTT packet: {s}"),
        }
    }
}

/// Reads the protocol version from a CONNECT packet at the start of `buf`.
/// `Ok(None)` means more bytes are needed.
pub(crate) fn sniff_version(buf: &[u8], max_packet: usize) -> Result<Option<Version>, CodecError> {
    let header = match m4::check(buf.iter(), max_packet) {
        Ok(h) => h,
        Err(m4::Error::InsufficientBytes(_)) => return Ok(None),
        Err(e) => return Err(CodecError::Malformed(format!("{e:?}"))),
    };
    if buf[0] >> 4 != 1 {
        return Err(CodecError::Malformed("first packet is not CONNECT".into()));
    }
    // The remaining-length varint ends at the first byte without bit 7 set.
    let len_bytes = buf[1..].iter().take_while(|b| *b & 0x80 != 0).count() + 1;
    let var = &buf[1 + len_bytes..header.frame_length()];
    // Protocol name "MQTT" (2-byte length 4) then the level byte.
    match var {
        [0, 4, b'M', b'Q', b'T', b'T', 4, ..] => Ok(Some(Version::V311)),
        [0, 4, b'M', b'Q', b'T', b'T', 5, ..] => Ok(Some(Version::V5)),
        [0, 4, b'M', b'Q', b'T', b'T', level, ..] => Err(CodecError::UnsupportedVersion(format!(
            "protocol level {level}"
        ))),
        _ => Err(CodecError::UnsupportedVersion("not MQTT 3.1.1 or 5".into())),
    }
}

/// Takes one packet off the front of `buf`; `Ok(None)` means more bytes are needed.
pub(crate) fn read(
    version: Version,
    buf: &mut BytesMut,
    max_packet: usize,
) -> Result<Option<Inbound>, CodecError> {
    // MQTT 5 allows a DISCONNECT with no body (reason "normal"), which the
    // packet library does not accept; handle it here.
    if version == Version::V5 && buf.len() >= 2 && buf[0] == 0xE0 && buf[1] == 0 {
        let _ = buf.split_to(2);
        return Ok(Some(Inbound::Disconnect));
    }
    match version {
        Version::V311 => match v4::read(buf, max_packet) {
            Ok(p) => Ok(Some(from_v4(p))),
            Err(m4::Error::InsufficientBytes(_)) => Ok(None),
            Err(e) => Err(CodecError::Malformed(format!("{e:?}"))),
        },
        Version::V5 => match v5::Packet::read(buf, Some(max_packet)) {
            Ok(p) => Ok(Some(from_v5(p))),
            Err(m5::Error::InsufficientBytes(_)) => Ok(None),
            Err(e) => Err(CodecError::Malformed(format!("{e:?}"))),
        },
    }
}

fn from_v4(p: v4::Packet) -> Inbound {
    match p {
        v4::Packet::Connect(c) => Inbound::Connect {
            client_id: c.client_id,
            keep_alive_s: c.keep_alive,
            persistent: !c.clean_session,
            will: c.last_will.map(|w| Will {
                topic: w.topic,
                payload: w.message,
                qos: w.qos as u8,
            }),
            login: c.login.map(|l| (l.username, l.password)),
        },
        v4::Packet::Publish(p) => Inbound::Publish {
            topic: Ok(p.topic),
            qos: p.qos as u8,
            pkid: p.pkid,
            payload: p.payload,
        },
        v4::Packet::PubRel(r) => Inbound::PubRel { pkid: r.pkid },
        v4::Packet::Subscribe(s) => Inbound::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| (f.path, f.qos as u8))
                .collect(),
        },
        v4::Packet::Unsubscribe(u) => Inbound::Unsubscribe {
            pkid: u.pkid,
            filters: u.topics,
        },
        v4::Packet::PingReq => Inbound::PingReq,
        v4::Packet::Disconnect => Inbound::Disconnect,
        v4::Packet::PubAck(a) => Inbound::PubAck { pkid: a.pkid },
        v4::Packet::PubRec(_) => Inbound::Unexpected("PUBREC"),
        v4::Packet::PubComp(_) => Inbound::Unexpected("PUBCOMP"),
        _ => Inbound::Unexpected("server-to-client packet"),
    }
}

fn from_v5(p: v5::Packet) -> Inbound {
    match p {
        v5::Packet::Connect(c, will, login) => Inbound::Connect {
            client_id: c.client_id,
            keep_alive_s: c.keep_alive,
            // MQTT 5: a session outlives the connection only with a
            // non-zero session expiry interval (section 3.1.2.11.2).
            persistent: !c.clean_start
                && c.properties
                    .and_then(|p| p.session_expiry_interval)
                    .unwrap_or(0)
                    > 0,
            will: will.and_then(|w| {
                Some(Will {
                    topic: String::from_utf8(w.topic.to_vec()).ok()?,
                    payload: w.message,
                    qos: w.qos as u8,
                })
            }),
            login: login.map(|l| (l.username, l.password)),
        },
        v5::Packet::Publish(p) => Inbound::Publish {
            // Topic aliases are not offered in CONNACK, so every publish names its topic.
            topic: String::from_utf8(p.topic.to_vec())
                .map_err(|_| "topic is not UTF-8".to_string()),
            qos: p.qos as u8,
            pkid: p.pkid,
            payload: p.payload,
        },
        v5::Packet::PubRel(r) => Inbound::PubRel { pkid: r.pkid },
        v5::Packet::Subscribe(s) => Inbound::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| (f.path, f.qos as u8))
                .collect(),
        },
        v5::Packet::Unsubscribe(u) => Inbound::Unsubscribe {
            pkid: u.pkid,
            filters: u.filters,
        },
        v5::Packet::PingReq(_) => Inbound::PingReq,
        v5::Packet::Disconnect(_) => Inbound::Disconnect,
        v5::Packet::PubAck(a) => Inbound::PubAck { pkid: a.pkid },
        v5::Packet::PubRec(_) => Inbound::Unexpected("PUBREC"),
        v5::Packet::PubComp(_) => Inbound::Unexpected("PUBCOMP"),
        _ => Inbound::Unexpected("server-to-client packet"),
    }
}

/// Appends the encoding of `packet` to `out`.
pub(crate) fn write(version: Version, packet: &Outbound, out: &mut BytesMut) {
    let result = match version {
        Version::V311 => write_v4(packet, out).map_err(|e| format!("{e:?}")),
        Version::V5 => write_v5(packet, out).map_err(|e| format!("{e:?}")),
    };
    // Encoding only fails for oversized fields, which these packets never carry.
    debug_assert!(result.is_ok(), "encoding {packet:?}");
}

fn write_v4(packet: &Outbound, out: &mut BytesMut) -> Result<usize, m4::Error> {
    match packet {
        Outbound::ConnAckAccepted { session_present } => {
            v4::ConnAck::new(v4::ConnectReturnCode::Success, *session_present).write(out)
        }
        Outbound::ConnAckUnsupportedVersion => {
            v4::ConnAck::new(v4::ConnectReturnCode::RefusedProtocolVersion, false).write(out)
        }
        Outbound::ConnAckBadCredentials => {
            v4::ConnAck::new(v4::ConnectReturnCode::BadUserNamePassword, false).write(out)
        }
        Outbound::ConnAckNotAuthorized => {
            v4::ConnAck::new(v4::ConnectReturnCode::NotAuthorized, false).write(out)
        }
        // MQTT 3.1.1 cannot refuse a publish: it is acknowledged, and the
        // rejection is counted and logged on our side.
        Outbound::PubAck { pkid, .. } => v4::PubAck::new(*pkid).write(out),
        Outbound::PubRec { pkid, .. } => v4::PubRec::new(*pkid).write(out),
        Outbound::PubComp { pkid } => v4::PubComp::new(*pkid).write(out),
        Outbound::SubAck { pkid, granted } => v4::SubAck::new(
            *pkid,
            granted
                .iter()
                .map(|g| match g {
                    Granted::Qos(q) => v4::SubscribeReasonCode::Success(qos_v4(*q)),
                    Granted::InvalidFilter | Granted::NotAuthorized => {
                        v4::SubscribeReasonCode::Failure
                    }
                })
                .collect(),
        )
        .write(out),
        Outbound::Publish {
            topic,
            payload,
            qos,
            pkid,
            dup,
        } => {
            let mut p = v4::Publish::new(topic.clone(), qos_v4(*qos), payload.to_vec());
            p.pkid = *pkid;
            p.dup = *dup;
            p.write(out)
        }
        Outbound::UnsubAck { pkid, .. } => v4::UnsubAck::new(*pkid).write(out),
        Outbound::PingResp => v4::PingResp.write(out),
    }
}

fn qos_v4(q: u8) -> m4::QoS {
    if q == 0 {
        m4::QoS::AtMostOnce
    } else {
        m4::QoS::AtLeastOnce
    }
}

fn qos_v5(q: u8) -> m5::QoS {
    if q == 0 {
        m5::QoS::AtMostOnce
    } else {
        m5::QoS::AtLeastOnce
    }
}

fn reason_string(s: &str) -> Option<String> {
    // Keep reason strings short: they travel in every acknowledgement.
    Some(s.chars().take(256).collect())
}

fn write_v5(packet: &Outbound, out: &mut BytesMut) -> Result<usize, m5::Error> {
    let ack = |reason: &AckReason| -> (v5::PubAckReason, Option<v5::PubAckProperties>) {
        let (code, text) = match reason {
            AckReason::Success => (v5::PubAckReason::Success, None),
            AckReason::PartlyAccepted(t) => (v5::PubAckReason::Success, Some(t)),
            AckReason::PayloadFormatInvalid(t) => (v5::PubAckReason::PayloadFormatInvalid, Some(t)),
            AckReason::TopicNameInvalid(t) => (v5::PubAckReason::TopicNameInvalid, Some(t)),
            AckReason::NotAuthorized(t) => (v5::PubAckReason::NotAuthorized, Some(t)),
        };
        let props = text.map(|t| v5::PubAckProperties {
            reason_string: reason_string(t),
            user_properties: Vec::new(),
        });
        (code, props)
    };
    match packet {
        Outbound::ConnAckAccepted { session_present } => v5::ConnAck {
            session_present: *session_present,
            code: v5::ConnectReturnCode::Success,
            properties: None,
        }
        .write(out),
        Outbound::ConnAckUnsupportedVersion => v5::ConnAck {
            session_present: false,
            code: v5::ConnectReturnCode::UnsupportedProtocolVersion,
            properties: None,
        }
        .write(out),
        Outbound::ConnAckBadCredentials => v5::ConnAck {
            session_present: false,
            code: v5::ConnectReturnCode::BadUserNamePassword,
            properties: None,
        }
        .write(out),
        Outbound::ConnAckNotAuthorized => v5::ConnAck {
            session_present: false,
            code: v5::ConnectReturnCode::NotAuthorized,
            properties: None,
        }
        .write(out),
        Outbound::PubAck { pkid, reason } => {
            let (reason, properties) = ack(reason);
            v5::PubAck {
                pkid: *pkid,
                reason,
                properties,
            }
            .write(out)
        }
        Outbound::PubRec { pkid, reason } => {
            let (code, properties) = ack(reason);
            let reason = match code {
                v5::PubAckReason::Success => v5::PubRecReason::Success,
                v5::PubAckReason::PayloadFormatInvalid => v5::PubRecReason::PayloadFormatInvalid,
                v5::PubAckReason::NotAuthorized => v5::PubRecReason::NotAuthorized,
                _ => v5::PubRecReason::TopicNameInvalid,
            };
            v5::PubRec {
                pkid: *pkid,
                reason,
                properties: properties.map(|p| v5::PubRecProperties {
                    reason_string: p.reason_string,
                    user_properties: Vec::new(),
                }),
            }
            .write(out)
        }
        Outbound::PubComp { pkid } => v5::PubComp::new(*pkid, None).write(out),
        Outbound::SubAck { pkid, granted } => v5::SubAck {
            pkid: *pkid,
            return_codes: granted
                .iter()
                .map(|g| match g {
                    Granted::Qos(q) => v5::SubscribeReasonCode::Success(qos_v5(*q)),
                    Granted::InvalidFilter => v5::SubscribeReasonCode::TopicFilterInvalid,
                    Granted::NotAuthorized => v5::SubscribeReasonCode::NotAuthorized,
                })
                .collect(),
            properties: None,
        }
        .write(out),
        Outbound::Publish {
            topic,
            payload,
            qos,
            pkid,
            dup,
        } => {
            let mut p = v5::Publish::new(topic.clone(), qos_v5(*qos), payload.to_vec(), None);
            p.pkid = *pkid;
            p.dup = *dup;
            p.write(out)
        }
        Outbound::UnsubAck { pkid, filters } => v5::UnsubAck {
            pkid: *pkid,
            reasons: vec![v5::UnsubAckReason::NoSubscriptionExisted; *filters],
            properties: None,
        }
        .write(out),
        Outbound::PingResp => v5::PingResp::write(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CONNECT packets as mosquitto_pub sends them (client id "c", keep-alive 60).
    fn connect(level: u8) -> Vec<u8> {
        let mut v = vec![0x10, 0];
        v.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', level, 0x02, 0, 60]);
        if level == 5 {
            v.push(0); // no properties
        }
        v.extend_from_slice(&[0, 1, b'c']);
        v[1] = (v.len() - 2) as u8;
        v
    }

    #[test]
    fn sniffs_both_versions_and_refuses_others() {
        assert_eq!(
            sniff_version(&connect(4), 1024).unwrap(),
            Some(Version::V311)
        );
        assert_eq!(sniff_version(&connect(5), 1024).unwrap(), Some(Version::V5));
        assert!(matches!(
            sniff_version(&connect(3), 1024),
            Err(CodecError::UnsupportedVersion(_))
        ));
        // MQTT 3.1 names the protocol "MQIsdp".
        let mut v31 = vec![0x10, 0, 0, 6];
        v31.extend_from_slice(b"MQIsdp");
        v31.extend_from_slice(&[3, 2, 0, 60, 0, 1, b'c']);
        v31[1] = (v31.len() - 2) as u8;
        assert!(matches!(
            sniff_version(&v31, 1024),
            Err(CodecError::UnsupportedVersion(_))
        ));
        // Incomplete: wait for more bytes; not CONNECT: refuse.
        assert_eq!(sniff_version(&connect(4)[..5], 1024).unwrap(), None);
        assert!(sniff_version(&[0x30, 0], 1024).is_err());
    }

    #[test]
    fn reads_connect_and_an_empty_v5_disconnect() {
        let mut buf = BytesMut::from(&connect(5)[..]);
        buf.extend_from_slice(&[0xE0, 0]);
        assert!(matches!(
            read(Version::V5, &mut buf, 1024).unwrap(),
            Some(Inbound::Connect {
                keep_alive_s: 60,
                ..
            })
        ));
        assert!(matches!(
            read(Version::V5, &mut buf, 1024).unwrap(),
            Some(Inbound::Disconnect)
        ));
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_and_garbage_packets_are_errors_not_panics() {
        let mut big = BytesMut::from(&[0x30, 0xFF, 0xFF, 0x7F][..]);
        assert!(read(Version::V311, &mut big, 1024).is_err());
        for bytes in [
            &[0x00u8, 0x00][..],
            &[0xF0, 0x00],
            &[0x30, 0x02, 0x00, 0x09],
        ] {
            let mut b = BytesMut::from(bytes);
            let _ = read(Version::V311, &mut b, 1024);
            let mut b = BytesMut::from(bytes);
            let _ = read(Version::V5, &mut b, 1024);
        }
    }
}
