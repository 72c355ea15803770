//! HL7 v2 ORU^R01 (unsolicited observation results), as bedside-monitor
//! gateways send vital signs, and the ACK they expect back.
//!
//! A message is segments separated by carriage returns; fields by the
//! character after "MSH" (normally `|`), components by the first encoding
//! character (normally `^`). medmesh reads MSH (sender, control ID, type),
//! PID-3 (patient identifier) and PID-5 (name), OBR-7 (observation time) and
//! every OBX: value type (OBX-2: NM, or CWE/CE for consciousness, LOINC
//! 67775-7, whose OBX-5 is an ACVPU answer as a LOINC answer code such as
//! `LA17108-4^Verbal^LN`), identifier (OBX-3: a LOINC code,
//! system "LN", or an IEEE 11073 MDC term, system "MDC"), value (OBX-5),
//! units (OBX-6: UCUM, or an MDC unit), result status (OBX-11) and time
//! (OBX-14). Times without a UTC offset are taken as UTC.

use crate::{Decoded, RecordError};
use medmesh_model::{Observation, TimestampMs, VitalSign};

/// The parts of an ORU^R01 medmesh uses, with its decoded observations.
#[derive(Debug, Clone, PartialEq)]
pub struct Oru {
    pub header: Header,
    /// PID-3, first identifier.
    pub patient_id: String,
    /// PID-5 as "Given Family", for admitting a patient not yet known.
    pub patient_name: String,
    pub decoded: Decoded,
}

/// What an ACK must echo from the message it acknowledges.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Header {
    pub sending_application: String,
    pub sending_facility: String,
    /// MSH-10, echoed in MSA-2.
    pub control_id: String,
    pub version: String,
}

/// A message that cannot be processed at all, with what the ACK can echo.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub header: Header,
    pub reason: String,
}

/// MSA-1 acknowledgement codes (original mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    /// Application Accept: every observation stored.
    Accept,
    /// Application Error: a data error in the body (some OBX rejected, or
    /// no usable observation); the accepted ones are stored.
    Error,
    /// Application Reject: bad header, unsupported message type, or the
    /// receiver cannot store now (the sender should retry).
    Reject,
}

impl AckCode {
    fn code(self) -> &'static str {
        match self {
            AckCode::Accept => "AA",
            AckCode::Error => "AE",
            AckCode::Reject => "AR",
        }
    }
}

/// IEEE 11073-10101 (MDC) terms that bedside monitors send for vital signs
/// (IHE PCD-01 messages), by reference ID and numeric code.
const MDC_TERMS: &[(&str, u32, VitalSign)] = &[
    ("MDC_ECG_HEART_RATE", 147_842, VitalSign::HeartRate),
    ("MDC_PULS_RATE", 149_514, VitalSign::HeartRate),
    ("MDC_PULS_RATE_NON_INV", 149_546, VitalSign::HeartRate),
    ("MDC_PULS_OXIM_PULS_RATE", 149_530, VitalSign::HeartRate),
    ("MDC_PULS_OXIM_SAT_O2", 150_456, VitalSign::OxygenSaturation),
    ("MDC_RESP_RATE", 151_562, VitalSign::RespiratoryRate),
    ("MDC_TEMP_BODY", 150_364, VitalSign::BodyTemperature),
    ("MDC_TEMP", 150_344, VitalSign::BodyTemperature),
    (
        "MDC_PRESS_BLD_NONINV_SYS",
        150_021,
        VitalSign::SystolicBloodPressure,
    ),
    (
        "MDC_PRESS_BLD_NONINV_DIA",
        150_022,
        VitalSign::DiastolicBloodPressure,
    ),
    (
        "MDC_PRESS_BLD_NONINV_MEAN",
        150_023,
        VitalSign::MeanBloodPressure,
    ),
];

/// MDC units and other spellings seen in OBX-6, as UCUM.
const UNITS: &[(&str, &str)] = &[
    ("MDC_DIM_BEAT_PER_MIN", "/min"),
    ("264864", "/min"),
    ("MDC_DIM_RESP_PER_MIN", "/min"),
    ("264928", "/min"),
    ("MDC_DIM_PERCENT", "%"),
    ("262688", "%"),
    ("MDC_DIM_MMHG", "mm[Hg]"),
    ("266016", "mm[Hg]"),
    ("MDC_DIM_DEGC", "Cel"),
    ("268192", "Cel"),
    ("MDC_DIM_FAHR", "[degF]"),
    ("bpm", "/min"),
    ("BPM", "/min"),
    ("rpm", "/min"),
    ("degC", "Cel"),
    ("C", "Cel"),
    ("degF", "[degF]"),
    ("F", "[degF]"),
];

struct Delimiters {
    field: char,
    component: char,
    escape: char,
}

/// A segment's fields; `field(n)` is SEG-n.
struct Segment<'a> {
    name: &'a str,
    fields: Vec<&'a str>,
}

impl<'a> Segment<'a> {
    fn field(&self, n: usize) -> &'a str {
        // For MSH, MSH-1 is the field separator itself, so MSH-n is one to
        // the left of where splitting puts it.
        let i = if self.name == "MSH" { n - 1 } else { n };
        self.fields.get(i).copied().unwrap_or("")
    }
}

fn component<'a>(field: &'a str, d: &Delimiters, n: usize) -> &'a str {
    // Only the first repetition matters here.
    let first = field.split('~').next().unwrap_or("");
    first.split(d.component).nth(n - 1).unwrap_or("")
}

/// Undoes HL7 escape sequences (\F\ \S\ \T\ \R\ \E\) in text.
fn unescape(s: &str, d: &Delimiters) -> String {
    if !s.contains(d.escape) {
        return s.to_string();
    }
    let e = d.escape;
    s.replace(&format!("{e}F{e}"), &d.field.to_string())
        .replace(&format!("{e}S{e}"), &d.component.to_string())
        .replace(&format!("{e}T{e}"), "&")
        .replace(&format!("{e}R{e}"), "~")
        .replace(&format!("{e}E{e}"), &e.to_string())
}

/// Escapes text for a field of a message we write.
fn escape(s: &str) -> String {
    s.replace('\\', "\\E\\")
        .replace('|', "\\F\\")
        .replace('^', "\\S\\")
        .replace('&', "\\T\\")
        .replace('~', "\\R\\")
        .replace(['\r', '\n'], " ")
}

/// Parses an HL7 DTM: YYYY[MM[DD[HH[MM[SS[.S...]]]]]][+/-ZZZZ].
pub fn parse_time(s: &str) -> Option<TimestampMs> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let (body, offset_min) = match s.find(['+', '-']) {
        Some(i) => {
            let z = &s[i + 1..];
            if z.len() != 4 || !z.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let minutes = z[..2].parse::<i64>().ok()? * 60 + z[2..].parse::<i64>().ok()?;
            (
                &s[..i],
                if s.as_bytes()[i] == b'-' {
                    -minutes
                } else {
                    minutes
                },
            )
        }
        None => (s, 0),
    };
    let (digits, fraction) = match body.split_once('.') {
        Some((d, f)) => (d, Some(f)),
        None => (body, None),
    };
    if !(4..=14).contains(&digits.len())
        || digits.len() % 2 != 0
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let part = |from: usize, default: u32| -> u32 {
        digits
            .get(from..from + 2)
            .and_then(|p| p.parse().ok())
            .unwrap_or(default)
    };
    let year: i64 = digits[..4].parse().ok()?;
    let (month, day, hour, minute, second) =
        (part(4, 1), part(6, 1), part(8, 0), part(10, 0), part(12, 0));
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let millis = match fraction {
        Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
            let f = format!("{f:0<3}");
            f[..3].parse::<i64>().ok()?
        }
        Some(_) => return None,
        None => 0,
    };
    let days = crate::gatt::days_from_civil(year, month, day);
    let local = ((days * 24 + i64::from(hour)) * 60 + i64::from(minute)) * 60_000
        + i64::from(second) * 1000
        + millis;
    Some(local - offset_min * 60_000)
}

fn vital_for(identifier: &str, text: &str, system: &str) -> Option<VitalSign> {
    let mdc = MDC_TERMS.iter().find(|(name, code, _)| {
        *name == text || *name == identifier || identifier.parse::<u32>().ok() == Some(*code)
    });
    match system {
        "MDC" => mdc.map(|m| m.2),
        _ => VitalSign::lookup(identifier).or_else(|| mdc.map(|m| m.2)),
    }
}

fn ucum_unit<'a>(identifier: &'a str, text: &'a str) -> &'a str {
    UNITS
        .iter()
        .find(|(k, _)| *k == identifier || (!text.is_empty() && *k == text))
        .map_or(
            if identifier.is_empty() {
                text
            } else {
                identifier
            },
            |(_, u)| *u,
        )
}

/// Parses an ORU^R01. `Err` means the whole message is rejected (AR).
pub fn parse_oru(message: &str, now_ms: TimestampMs) -> Result<Oru, Rejection> {
    let reject = |header: &Header, reason: String| Rejection {
        header: header.clone(),
        reason,
    };
    let message = message.trim_start_matches(['\r', '\n']);
    let Some(rest) = message.strip_prefix("MSH") else {
        return Err(reject(
            &Header::default(),
            "message does not start with an MSH segment".into(),
        ));
    };
    let mut chars = rest.chars();
    let (Some(field_sep), Some(component_sep), Some(_repetition), Some(escape_char)) =
        (chars.next(), chars.next(), chars.next(), chars.next())
    else {
        return Err(reject(
            &Header::default(),
            "MSH is too short to hold its delimiters".into(),
        ));
    };
    let d = Delimiters {
        field: field_sep,
        component: component_sep,
        escape: escape_char,
    };
    let segments: Vec<Segment> = message
        .split(['\r', '\n'])
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let fields: Vec<&str> = s.split(field_sep).collect();
            Segment {
                name: fields[0],
                fields,
            }
        })
        .collect();
    let msh = &segments[0];
    let header = Header {
        sending_application: component(msh.field(3), &d, 1).to_string(),
        sending_facility: component(msh.field(4), &d, 1).to_string(),
        control_id: msh.field(10).to_string(),
        version: component(msh.field(12), &d, 1).to_string(),
    };
    let message_type = msh.field(9);
    let (kind, event) = (
        component(message_type, &d, 1),
        component(message_type, &d, 2),
    );
    if (kind, event) != ("ORU", "R01") {
        return Err(reject(
            &header,
            format!("message type {kind}^{event} is not supported; medmesh accepts ORU^R01"),
        ));
    }
    if header.control_id.is_empty() {
        return Err(reject(
            &header,
            "MSH-10 (message control ID) is empty".into(),
        ));
    }
    let Some(pid) = segments.iter().find(|s| s.name == "PID") else {
        return Err(reject(
            &header,
            "no PID segment: the patient is unknown".into(),
        ));
    };
    let patient_id = unescape(component(pid.field(3), &d, 1), &d);
    if patient_id.is_empty() {
        return Err(reject(
            &header,
            "PID-3 (patient identifier) is empty".into(),
        ));
    }
    let name = pid.field(5);
    let patient_name = format!(
        "{} {}",
        unescape(component(name, &d, 2), &d),
        unescape(component(name, &d, 1), &d)
    )
    .trim()
    .to_string();
    let message_time = parse_time(msh.field(7));
    let mut observation_time = None;
    let mut decoded = Decoded::default();
    let mut index = 0;
    for seg in &segments {
        match seg.name {
            "OBR" => observation_time = parse_time(seg.field(7)),
            "OBX" => {
                let time = parse_time(seg.field(14))
                    .or(observation_time)
                    .or(message_time)
                    .unwrap_or(now_ms);
                match obx(seg, &d, time) {
                    Ok(o) => decoded.accept(index, o),
                    Err(reason) => decoded.rejected.push(RecordError {
                        index,
                        reason: format!("OBX {}: {reason}", seg.field(1)),
                    }),
                }
                index += 1;
            }
            _ => {}
        }
    }
    Ok(Oru {
        header,
        patient_id,
        patient_name,
        decoded,
    })
}

fn obx(seg: &Segment, d: &Delimiters, time: TimestampMs) -> Result<Observation, String> {
    let value_type = seg.field(2);
    if !matches!(value_type, "NM" | "CWE" | "CE") {
        return Err(format!(
            "value type {value_type:?} is not NM (numeric), or CWE/CE (coded) for consciousness"
        ));
    }
    let id = seg.field(3);
    let (identifier, text, system) = (
        component(id, d, 1),
        component(id, d, 2),
        component(id, d, 3),
    );
    let vital = vital_for(identifier, text, system).ok_or_else(|| {
        format!("observation {identifier}^{text}^{system} is not a vital sign medmesh knows")
    })?;
    let status = seg.field(11);
    if matches!(status, "X" | "D" | "W") {
        return Err(format!("result status {status} (not a valid result)"));
    }
    if value_type != "NM" {
        return coded_obx(vital, seg, d, time);
    }
    let raw = seg.field(5).trim();
    let value: f64 = raw
        .parse()
        .map_err(|_| format!("value {raw:?} is not a number"))?;
    let units = seg.field(6);
    let unit = ucum_unit(component(units, d, 1), component(units, d, 2));
    if unit.is_empty() {
        return Err(format!("{vital} has no units (OBX-6)"));
    }
    Observation::measured(vital, value, unit, time).map_err(|e| e.to_string())
}

/// A coded OBX (value type CWE or CE): consciousness (LOINC 67775-7) whose
/// OBX-5 is an ACVPU answer as a LOINC answer code, `LA17108-4^Verbal^LN`
/// (identifier, text, coding system; the alternate triplet in components
/// 4-6 is read too). The same codes as FHIR's valueCodeableConcept
/// (`medmesh_model::ACVPU_LOINC_ANSWERS`).
fn coded_obx(
    vital: VitalSign,
    seg: &Segment,
    d: &Delimiters,
    time: TimestampMs,
) -> Result<Observation, String> {
    if !vital.is_coded() {
        return Err(format!(
            "{vital} is a quantity: send value type NM, not {}",
            seg.field(2)
        ));
    }
    let value = seg.field(5);
    let value = [(1, 3), (4, 6)]
        .iter()
        .filter(|(_, system)| component(value, d, *system) == "LN")
        .find_map(|(code, _)| vital.loinc_answer(component(value, d, *code).trim()))
        .ok_or_else(|| {
            let known: Vec<String> = medmesh_model::ACVPU_LOINC_ANSWERS
                .iter()
                .map(|(code, letter, _)| format!("{code} ({letter})"))
                .collect();
            format!(
                "{vital} value {:?} (coding system {:?}) is not an ACVPU answer; send a LOINC \
                 answer code, coding system LN: {}",
                component(value, d, 1),
                component(value, d, 3),
                known.join(", ")
            )
        })?;
    Observation::measured(vital, value, vital.ucum(), time).map_err(|e| e.to_string())
}

/// Builds the ACK for a message: MSH, then MSA with the code, the control ID
/// acknowledged and (when not AA) the reason.
pub fn ack(header: &Header, code: AckCode, text: &str, ack_control_id: &str, now: &str) -> String {
    let version = if header.version.is_empty() {
        "2.5"
    } else {
        &header.version
    };
    let mut out = format!(
        "MSH|^~\\&|MEDMESH|MEDMESH|{}|{}|{now}||ACK^R01^ACK|{ack_control_id}|P|{version}\rMSA|{}|{}",
        escape(&header.sending_application),
        escape(&header.sending_facility),
        code.code(),
        escape(&header.control_id),
    );
    if code != AckCode::Accept {
        out.push('|');
        out.push_str(&escape(&text.chars().take(200).collect::<String>()));
    }
    out.push('\r');
    out
}

/// Formats epoch milliseconds as an HL7 DTM in UTC (YYYYMMDDHHMMSS+0000).
pub fn format_time(ms: TimestampMs) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000) / 1000;
    let (y, m, d) = crate::gatt::civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}+0000",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: TimestampMs = 1_790_000_000_000;

    fn msg(obx: &[&str]) -> String {
        let mut m = vec![
            "MSH|^~\\&|MONITOR_GW|ICU|MEDMESH|HOSP|20261125083000||ORU^R01^ORU_R01|MSG00001|P|2.5",
            "PID|||P12345^^^HOSP^MR||Doe^Jane||19500101|F",
            "OBR|1|||VITALS|||20261125082955",
        ];
        m.extend_from_slice(obx);
        m.join("\r")
    }

    #[test]
    fn loinc_and_mdc_observations() {
        let m = msg(&[
            "OBX|1|NM|8867-4^Heart rate^LN||72|/min^^UCUM|||||F",
            "OBX|2|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC||97|262688^MDC_DIM_PERCENT^MDC|||||F|||20261125083001",
            "OBX|3|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC||118|266016^MDC_DIM_MMHG^MDC|||||F",
            "OBX|4|NM|8310-5^Body temperature^LN||98.6|degF|||||F",
        ]);
        let oru = parse_oru(&m, NOW).unwrap();
        assert_eq!(oru.header.control_id, "MSG00001");
        assert_eq!(oru.header.sending_application, "MONITOR_GW");
        assert_eq!(oru.patient_id, "P12345");
        assert_eq!(oru.patient_name, "Jane Doe");
        assert!(
            oru.decoded.rejected.is_empty(),
            "{:?}",
            oru.decoded.rejected
        );
        let o = &oru.decoded.observations;
        assert_eq!((o[0].vital, o[0].value), (VitalSign::HeartRate, 72.0));
        // OBR-7, 2026-11-25 08:29:55 UTC, unless the OBX has its own time.
        assert_eq!(o[0].time_ms, parse_time("20261125082955").unwrap());
        assert_eq!(o[1].time_ms, parse_time("20261125083001").unwrap());
        assert_eq!(
            (o[1].vital, o[1].value),
            (VitalSign::OxygenSaturation, 97.0)
        );
        assert_eq!(
            (o[2].vital, o[2].value),
            (VitalSign::SystolicBloodPressure, 118.0)
        );
        assert!((o[3].value - 37.0).abs() < 1e-9);
    }

    #[test]
    fn bad_obx_are_rejected_one_by_one() {
        let m = msg(&[
            "OBX|1|ST|8867-4^Heart rate^LN||fast|/min|||||F",
            "OBX|2|NM|2345-7^Glucose^LN||5|mmol/L|||||F",
            "OBX|3|NM|8867-4^Heart rate^LN||seventy|/min|||||F",
            "OBX|4|NM|8867-4^Heart rate^LN||70|/min|||||X",
            "OBX|5|NM|8867-4^Heart rate^LN||700|/min|||||F",
            "OBX|6|NM|8867-4^Heart rate^LN||70||||||F",
            "OBX|7|NM|9279-1^Resp rate^LN||16|/min|||||F",
        ]);
        let oru = parse_oru(&m, NOW).unwrap();
        assert_eq!(oru.decoded.observations.len(), 1);
        let reasons: Vec<&str> = oru
            .decoded
            .rejected
            .iter()
            .map(|r| r.reason.as_str())
            .collect();
        assert_eq!(reasons.len(), 6, "{reasons:?}");
        assert!(reasons[0].contains("not NM"));
        assert!(reasons[1].contains("not a vital sign"));
        assert!(reasons[2].contains("not a number"));
        assert!(reasons[3].contains("status X"));
        assert!(reasons[4].contains("plausible"));
        assert!(reasons[5].contains("no units"));
    }

    /// ACVPU as a coded OBX (CWE, and CE of older versions), after the
    /// HL7 v2.5 OBX examples with a coded value: each level stored 0-4.
    #[test]
    fn consciousness_as_a_coded_obx() {
        let m = msg(&[
            "OBX|1|CWE|67775-7^Level of responsiveness^LN||LA9340-6^Alert^LN||||||F",
            "OBX|2|CWE|67775-7^Level of responsiveness^LN||LA6560-2^Confused^LN||||||F",
            "OBX|3|CE|67775-7^Level of responsiveness^LN||LA17108-4^Verbal^LN||||||F",
            "OBX|4|CWE|67775-7^Level of responsiveness^LN||V^Voice^L^LA17107-6^Painful^LN||||||F",
            "OBX|5|CWE|67775-7^Level of responsiveness^LN||LA9343-0^Unresponsive^LN||||||F",
            "OBX|6|CWE|67775-7^Level of responsiveness^LN||248234008^Alert^SCT||||||F",
            "OBX|7|CWE|8867-4^Heart rate^LN||LA9340-6^Alert^LN||||||F",
            "OBX|8|NM|67775-7^Level of responsiveness^LN||2|{ACVPU}|||||F",
        ]);
        let oru = parse_oru(&m, NOW).unwrap();
        let levels: Vec<_> = oru
            .decoded
            .observations
            .iter()
            .map(|o| (o.vital, o.value))
            .collect();
        assert_eq!(
            levels,
            [0.0, 1.0, 2.0, 3.0, 4.0, 2.0].map(|v| (VitalSign::Consciousness, v))
        );
        let reasons: Vec<_> = oru
            .decoded
            .rejected
            .iter()
            .map(|r| r.reason.as_str())
            .collect();
        assert!(reasons[0].starts_with("OBX 6:"), "{reasons:?}");
        assert!(
            reasons[0].contains("\"248234008\" (coding system \"SCT\")"),
            "{reasons:?}"
        );
        assert!(reasons[0].contains("LA17108-4 (V)"), "{reasons:?}");
        assert!(reasons[1].contains("send value type NM"), "{reasons:?}");
    }

    #[test]
    fn whole_message_rejections() {
        assert!(parse_oru("", NOW).unwrap_err().reason.contains("MSH"));
        assert!(
            parse_oru("MSH|^", NOW)
                .unwrap_err()
                .reason
                .contains("delimiters")
        );
        let adt = "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|X1|P|2.5\rPID|||1";
        let r = parse_oru(adt, NOW).unwrap_err();
        assert!(r.reason.contains("ADT^A01"));
        assert_eq!(r.header.control_id, "X1");
        let no_pid = "MSH|^~\\&|A|B|C|D|20260101||ORU^R01|X2|P|2.5\rOBX|1|NM|8867-4^HR^LN||70|/min";
        assert!(parse_oru(no_pid, NOW).unwrap_err().reason.contains("PID"));
    }

    #[test]
    fn times() {
        assert_eq!(
            parse_time("20261125083000"),
            parse_time("20261125093000+0100")
        );
        assert_eq!(
            parse_time("20261125083000.25").unwrap() - parse_time("20261125083000").unwrap(),
            250
        );
        assert_eq!(parse_time("202611"), parse_time("20261101000000"));
        for bad in [
            "",
            "2026112",
            "20261325",
            "20261125083000+01",
            "abcd",
            "20261125083000.x",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
        assert_eq!(
            format_time(parse_time("20261125083000").unwrap()),
            "20261125083000+0000"
        );
    }

    #[test]
    fn ack_echoes_the_control_id_and_escapes_text() {
        let h = Header {
            sending_application: "GW".into(),
            sending_facility: "ICU".into(),
            control_id: "MSG00001".into(),
            version: "2.5".into(),
        };
        let a = ack(
            &h,
            AckCode::Error,
            "OBX 2: value \"x|y\" is not a number",
            "MM1",
            "20261125083000+0000",
        );
        assert!(a.starts_with(
            "MSH|^~\\&|MEDMESH|MEDMESH|GW|ICU|20261125083000+0000||ACK^R01^ACK|MM1|P|2.5\r"
        ));
        assert!(
            a.contains("\rMSA|AE|MSG00001|OBX 2: value \"x\\F\\y\" is not a number\r"),
            "{a}"
        );
        assert!(ack(&h, AckCode::Accept, "", "MM2", "x").ends_with("MSA|AA|MSG00001\r"));
    }
}
