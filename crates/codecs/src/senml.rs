//! SenML JSON (RFC 8428), the native payload of medmesh devices.
//!
//! A SenML pack is a JSON array of records. Base fields (`bn`, `bt`, `bu`,
//! `bv`) apply to the records that follow them until changed (section 4.1).
//! The measurement is named by the resolved name `bn + n`; medmesh looks up
//! the part after the last `:` or `/` (so `urn:dev:mac:0024be:heart_rate` and
//! a bare `8867-4` both work) against the vital-sign catalogue.

use crate::{DecodeError, Decoded, RecordError};
use medmesh_model::{DeviceReport, Observation, TimestampMs, VitalSign};
use serde::Deserialize;
use serde_json::value::RawValue;

/// Times below 2**28 seconds are relative to "now" (RFC 8428 section 4.5.3).
const RELATIVE_TIME_LIMIT: f64 = 268_435_456.0;

#[derive(Debug, Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    bn: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    bt: Option<f64>,
    #[serde(borrow, default)]
    bu: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    bv: Option<f64>,
    #[serde(default)]
    bver: Option<u32>,
    #[serde(borrow, default)]
    n: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    u: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    v: Option<f64>,
    #[serde(borrow, default)]
    vs: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    vb: Option<bool>,
    #[serde(default)]
    vd: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    t: Option<f64>,
    /// Fields whose names end in `_` must be understood or the record
    /// rejected (section 4.4); medmesh understands none of them.
    #[serde(flatten)]
    other: std::collections::HashMap<&'a str, serde::de::IgnoredAny>,
}

/// Base values carried from record to record.
#[derive(Default)]
struct Base {
    name: String,
    time: f64,
    unit: Option<String>,
    value: f64,
}

/// Decodes a SenML JSON pack. `now_ms` resolves relative and missing times.
pub fn decode_json(payload: &[u8], now_ms: TimestampMs) -> Result<Decoded, DecodeError> {
    let records: Vec<&RawValue> = serde_json::from_slice(payload).map_err(|e| {
        DecodeError(format!(
            "not a SenML JSON pack (a JSON array of records): {e}"
        ))
    })?;
    if records.is_empty() {
        return Err(DecodeError("SenML pack is empty".into()));
    }
    let mut out = Decoded::default();
    let mut base = Base::default();
    for (index, raw) in records.iter().enumerate() {
        match decode_record(raw, &mut base, now_ms) {
            Ok(Item::Observation(obs)) => out.accept(index, obs),
            Ok(Item::Device(report)) => out.device.push(report),
            Ok(Item::Nothing) => {}
            Err(reason) => out.rejected.push(RecordError { index, reason }),
        }
    }
    Ok(out)
}

/// What one record carries.
enum Item {
    Observation(Observation),
    Device(DeviceReport),
    /// A valid record that reports nothing to act on (`fall` false).
    Nothing,
}

/// Battery level, the SenML units registry's `%EL` (percentage of remaining
/// battery energy, RFC 8428 section 12.1); plain `%` is accepted too.
const BATTERY_UNITS: [&str; 2] = ["%EL", "%"];

fn decode_record(raw: &RawValue, base: &mut Base, now_ms: TimestampMs) -> Result<Item, String> {
    let rec: Record =
        serde_json::from_str(raw.get()).map_err(|e| format!("malformed record: {e}"))?;
    if let Some(field) = rec.other.keys().find(|k| k.ends_with('_')) {
        return Err(format!("unsupported must-understand field {field:?}"));
    }
    if let Some(ver) = rec.bver.filter(|v| *v > 10) {
        return Err(format!("unsupported SenML version {ver}"));
    }
    // Base fields update before this record is resolved (section 4.1).
    if let Some(bn) = rec.bn {
        base.name = bn.into_owned();
    }
    if let Some(bt) = rec.bt {
        base.time = bt;
    }
    if let Some(bu) = rec.bu {
        base.unit = Some(bu.into_owned());
    }
    if let Some(bv) = rec.bv {
        base.value = bv;
    }

    let name = format!("{}{}", base.name, rec.n.as_deref().unwrap_or(""));
    if name.is_empty() {
        return Err("record has no name (n or bn)".into());
    }
    let short = name.rsplit([':', '/']).next().unwrap_or(&name);
    let time_ms = record_time(base, rec.t, now_ms)?;
    if short.eq_ignore_ascii_case("fall") {
        // A wearable's fall detector: `"vb": true` reports a fall.
        return match rec.vb {
            Some(true) => Ok(Item::Device(DeviceReport::Fall { time_ms })),
            Some(false) => Ok(Item::Nothing),
            None => Err("fall needs a boolean value (vb)".into()),
        };
    }
    if short.eq_ignore_ascii_case("battery") {
        let percent = rec
            .v
            .map(|v| base.value + v)
            .ok_or("battery record has no value (v)")?;
        let unit = rec.u.as_deref().or(base.unit.as_deref()).unwrap_or("");
        if !BATTERY_UNITS.contains(&unit) {
            return Err(format!(
                "battery unit {unit:?} is not accepted; send \"%EL\""
            ));
        }
        if !(0.0..=100.0).contains(&percent) {
            return Err(format!("battery level {percent} %EL is outside 0..100"));
        }
        return Ok(Item::Device(DeviceReport::Battery { percent, time_ms }));
    }
    let vital = VitalSign::lookup(short).or_else(|| VitalSign::lookup(&name)).ok_or_else(|| {
        format!("unknown measurement {short:?}; use a LOINC code (e.g. \"8867-4\") or a name such as \"heart_rate\"")
    })?;

    // A coded reading (consciousness: an ACVPU letter) as a string value.
    if let (Some(text), None, None) = (&rec.vs, &rec.vb, &rec.vd) {
        let value = vital.coded(text).ok_or_else(|| match vital {
            VitalSign::Consciousness => {
                format!("{vital} value {text:?} is not an ACVPU letter (A, C, V, P or U)")
            }
            _ => format!("{vital} needs a numeric value (v), not a string, boolean or data value"),
        })?;
        return Observation::measured(vital, value, vital.ucum(), time_ms)
            .map(Item::Observation)
            .map_err(|e| e.to_string());
    }
    if rec.vs.is_some() || rec.vb.is_some() || rec.vd.is_some() {
        return Err(format!(
            "{vital} needs a numeric value (v), not a string, boolean or data value"
        ));
    }
    let value = match (rec.v, rec.bv) {
        (Some(v), _) => base.value + v,
        (None, Some(_)) => base.value,
        (None, None) => return Err(format!("{vital} record has no value (v)")),
    };
    let unit = rec.u.as_deref().or(base.unit.as_deref()).ok_or_else(|| {
        format!(
            "{vital} record has no unit (u or bu); send {:?}",
            vital.ucum()
        )
    })?;

    Observation::measured(vital, value, unit, time_ms)
        .map(Item::Observation)
        .map_err(|e| e.to_string())
}

/// The record's time: base time plus its own, relative to `now_ms` when small.
fn record_time(base: &Base, t: Option<f64>, now_ms: TimestampMs) -> Result<TimestampMs, String> {
    let time_s = base.time + t.unwrap_or(0.0);
    if !time_s.is_finite() {
        return Err("time is not a finite number".into());
    }
    Ok(if time_s.abs() < RELATIVE_TIME_LIMIT {
        now_ms + (time_s * 1000.0).round() as i64
    } else {
        (time_s * 1000.0).round() as i64
    })
}

/// SenML CBOR labels (RFC 8428 section 6, table 4).
const CBOR_LABELS: [(i64, &str); 15] = [
    (-1, "bver"),
    (-2, "bn"),
    (-3, "bt"),
    (-4, "bu"),
    (-5, "bv"),
    (-6, "bs"),
    (0, "n"),
    (1, "u"),
    (2, "v"),
    (3, "vs"),
    (4, "vb"),
    (5, "s"),
    (6, "t"),
    (7, "ut"),
    (8, "vd"),
];

/// Decodes a SenML CBOR pack (RFC 8428 section 6): an array of maps keyed by
/// the integer labels above. The pack is mapped label for label onto SenML
/// JSON and decoded by the same rules, so both encodings behave alike.
pub fn decode_cbor(payload: &[u8], now_ms: TimestampMs) -> Result<Decoded, DecodeError> {
    use ciborium::Value;
    let pack: Value = ciborium::from_reader(payload)
        .map_err(|e| DecodeError(format!("not a SenML CBOR pack (a CBOR array of maps): {e}")))?;
    let Value::Array(records) = pack else {
        return Err(DecodeError("SenML CBOR pack is not an array".into()));
    };
    let to_json = |v: &Value| -> serde_json::Value {
        match v {
            Value::Integer(i) => serde_json::Value::from(i128::from(*i) as f64),
            Value::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
            }
            Value::Text(t) => t.clone().into(),
            Value::Bool(b) => (*b).into(),
            // Data values (vd) travel as bytes; any value marks the field present.
            Value::Bytes(_) => "<bytes>".into(),
            _ => serde_json::Value::Null,
        }
    };
    let mut json = Vec::with_capacity(records.len());
    for record in &records {
        let Value::Map(fields) = record else {
            // Keep the position: the JSON decoder rejects it as a malformed record.
            json.push(serde_json::Value::Null);
            continue;
        };
        let mut obj = serde_json::Map::new();
        for (key, value) in fields {
            let name = match key {
                Value::Integer(i) => {
                    let label = i128::from(*i);
                    match CBOR_LABELS.iter().find(|(l, _)| i128::from(*l) == label) {
                        Some((_, name)) => (*name).to_string(),
                        // Unregistered labels are ignored, like unknown JSON fields.
                        None => format!("label{label}"),
                    }
                }
                Value::Text(t) => t.clone(),
                _ => {
                    return Err(DecodeError(
                        "SenML CBOR map key is neither an integer nor text".into(),
                    ));
                }
            };
            obj.insert(name, to_json(value));
        }
        json.push(serde_json::Value::Object(obj));
    }
    let text = serde_json::to_vec(&json).map_err(|e| DecodeError(e.to_string()))?;
    decode_json(&text, now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: TimestampMs = 1_700_000_000_000;

    fn decode(s: &str) -> Decoded {
        decode_json(s.as_bytes(), NOW).expect("pack decodes")
    }

    #[test]
    fn resolves_base_name_time_and_unit() {
        let d = decode(
            r#"[{"bn":"urn:dev:mac:0024befffe804ff1:","bt":1.7e9,"bu":"beat/min","n":"heart_rate","v":72},
                {"n":"heart_rate","t":1,"v":74},
                {"n":"spo2","u":"%","v":97}]"#,
        );
        assert!(d.rejected.is_empty(), "{:?}", d.rejected);
        assert_eq!(d.observations.len(), 3);
        assert_eq!(d.observations[0].vital, VitalSign::HeartRate);
        assert_eq!(d.observations[0].time_ms, 1_700_000_000_000);
        assert_eq!(d.observations[1].time_ms, 1_700_000_001_000);
        assert_eq!(d.observations[2].vital, VitalSign::OxygenSaturation);
        assert_eq!(d.observations[2].value, 97.0);
    }

    #[test]
    fn loinc_code_as_name_and_base_value() {
        let d = decode(r#"[{"bv":36.0,"n":"8310-5","u":"Cel","v":0.6}]"#);
        assert_eq!(d.observations[0].vital, VitalSign::BodyTemperature);
        assert!((d.observations[0].value - 36.6).abs() < 1e-9);
    }

    /// ACVPU (RCP NEWS2 2017 Chart 1 "Consciousness") as a letter in a
    /// string value, or as its level 0-4 in `{ACVPU}`; anything else is
    /// rejected with the letters it takes.
    #[test]
    fn consciousness_as_an_acvpu_letter_or_level() {
        let d = decode(
            r#"[{"n":"consciousness","vs":"C"},{"n":"67775-7","vs":"a"},
                {"n":"acvpu","u":"{ACVPU}","v":4},{"n":"consciousness","vs":"confused"},
                {"n":"heart_rate","u":"/min","vs":"72"}]"#,
        );
        let values: Vec<_> = d.observations.iter().map(|o| (o.vital, o.value)).collect();
        assert_eq!(
            values,
            [
                (VitalSign::Consciousness, 1.0),
                (VitalSign::Consciousness, 0.0),
                (VitalSign::Consciousness, 4.0)
            ]
        );
        assert_eq!(d.rejected.len(), 2);
        assert!(
            d.rejected[0].reason.contains("A, C, V, P or U"),
            "{:?}",
            d.rejected
        );
        assert!(
            d.rejected[1].reason.contains("numeric value"),
            "{:?}",
            d.rejected
        );
    }

    #[test]
    fn missing_and_relative_times_are_relative_to_now() {
        let d = decode(r#"[{"n":"rr","u":"/min","v":16},{"n":"rr","u":"/min","v":17,"t":-5}]"#);
        assert_eq!(d.observations[0].time_ms, NOW);
        assert_eq!(d.observations[1].time_ms, NOW - 5000);
    }

    #[test]
    fn one_bad_record_does_not_spoil_the_others() {
        let d = decode(
            r#"[{"n":"heart_rate","u":"/min","v":80},
                {"n":"heart_rate","u":"/min","v":"eighty"},
                {"n":"lactate","u":"mmol/L","v":2},
                {"n":"body_temperature","u":"Ra","v":558},
                {"n":"spo2","u":"%","v":140},
                {"n":"spo2","v":95},
                {"n":"spo2","u":"%","vs":"ok"},
                {"n":"spo2","u":"%","v":95,"x_":1},
                {"n":"respiratory_rate","u":"/min","v":18}]"#,
        );
        assert_eq!(d.observations.len(), 2);
        let reasons: Vec<_> = d
            .rejected
            .iter()
            .map(|r| (r.index, r.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 7);
        assert!(reasons[0].1.starts_with("malformed record"), "{reasons:?}");
        assert!(reasons[1].1.contains("unknown measurement \"lactate\""));
        assert!(reasons[2].1.contains("\"Ra\""));
        assert!(reasons[3].1.contains("plausible range"));
        assert!(reasons[4].1.contains("no unit"));
        assert!(reasons[5].1.contains("numeric value"));
        assert!(reasons[6].1.contains("must-understand"));
        assert_eq!(
            reasons.iter().map(|r| r.0).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5, 6, 7]
        );
    }

    #[test]
    fn units_are_converted_to_ucum() {
        let d = decode(
            r#"[{"n":"body_temperature","u":"[degF]","v":98.6},
                {"n":"glucose","u":"mmol/L","v":5.5},
                {"n":"weight","u":"[lb_av]","v":150}]"#,
        );
        assert!(d.rejected.is_empty(), "{:?}", d.rejected);
        let v: Vec<f64> = d.observations.iter().map(|o| o.value).collect();
        assert!((v[0] - 37.0).abs() < 1e-9);
        assert!((v[1] - 99.0858).abs() < 1e-9);
        assert!((v[2] - 68.0388555).abs() < 1e-9);
        assert_eq!(d.observations[1].vital, VitalSign::BloodGlucose);
    }

    fn cbor(v: &ciborium::Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(v, &mut out).unwrap();
        out
    }

    #[test]
    fn cbor_packs_decode_like_json() {
        use ciborium::Value as V;
        let i = |n: i64| V::Integer(n.into());
        // [{-2: "urn:dev:ow:10e2073a0108006:", -3: 1.7e9, 0: "heart_rate", 1: "beat/min", 2: 72},
        //  {0: "spo2", 1: "%", 2: 97.5, 6: 1}]
        let pack = V::Array(vec![
            V::Map(vec![
                (i(-2), V::Text("urn:dev:ow:10e2073a0108006:".into())),
                (i(-3), V::Float(1.7e9)),
                (i(0), V::Text("heart_rate".into())),
                (i(1), V::Text("beat/min".into())),
                (i(2), i(72)),
            ]),
            V::Map(vec![
                (i(0), V::Text("spo2".into())),
                (i(1), V::Text("%".into())),
                (i(2), V::Float(97.5)),
                (i(6), i(1)),
            ]),
            V::Text("not a record".into()),
        ]);
        let d = decode_cbor(&cbor(&pack), NOW).unwrap();
        assert_eq!(d.observations.len(), 2);
        assert_eq!(d.observations[0].vital, VitalSign::HeartRate);
        assert_eq!(d.observations[0].time_ms, 1_700_000_000_000);
        assert_eq!(d.observations[1].value, 97.5);
        assert_eq!(d.observations[1].time_ms, 1_700_000_001_000);
        assert_eq!(d.rejected[0].index, 2);
        for bad in [&b""[..], b"\xff", b"\xa1\x00\x00", &cbor(&V::Map(vec![]))] {
            assert!(decode_cbor(bad, NOW).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn whole_pack_errors() {
        for bad in ["", "{}", "[", "null", "[]", "\u{0}\u{1}", "[1,2"] {
            assert!(
                decode_json(bad.as_bytes(), NOW).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn non_object_records_are_rejected_individually() {
        let d = decode(r#"[42, {"n":"hr","u":"/min","v":60}]"#);
        assert_eq!(d.observations.len(), 1);
        assert_eq!(d.rejected[0].index, 0);
    }

    #[test]
    fn battery_and_fall_records_are_device_reports() {
        let d = decode(
            r#"[{"bt":1.8e9,"n":"battery","u":"%EL","v":15},
                {"n":"fall","vb":true,"t":2},
                {"n":"fall","vb":false},
                {"n":"battery","u":"V","v":3.7},
                {"n":"fall","v":1},
                {"n":"heart_rate","u":"/min","v":70}]"#,
        );
        assert_eq!(
            d.device,
            vec![
                DeviceReport::Battery {
                    percent: 15.0,
                    time_ms: 1_800_000_000_000
                },
                DeviceReport::Fall {
                    time_ms: 1_800_000_002_000
                }
            ]
        );
        assert_eq!(d.observations.len(), 1);
        let bad: Vec<_> = d.rejected.iter().map(|r| r.index).collect();
        assert_eq!(bad, vec![3, 4], "{:?}", d.rejected);
        assert!(d.rejected[0].reason.contains("%EL"));
    }
}
