//! FHIR R4 Observation (and Bundles of them) as input: what an EHR, an app
//! or another platform posts.
//!
//! Per Observation medmesh reads `status`, `code.coding` (LOINC, system
//! `http://loinc.org`), `subject` (`Patient/{id}`), `device` (`Device/{id}`),
//! `effectiveDateTime` / `effectiveInstant` / `effectivePeriod.start`, and
//! `valueQuantity` (value, UCUM `code` or `unit`). A panel with `component`s
//! (the vital-signs blood-pressure panel, LOINC 85354-9) yields one
//! observation per component. Consciousness (LOINC 67775-7) is coded: its
//! `valueCodeableConcept` carries an ACVPU answer as a LOINC answer code
//! (`medmesh_model::ACVPU_LOINC_ANSWERS`). Statuses `entered-in-error` and
//! `cancelled` are rejected: they are not results.

use crate::{DecodeError, RecordError};
use medmesh_model::{Observation, TimestampMs, VitalSign};
use serde_json::Value;

const LOINC: &str = "http://loinc.org";

/// One accepted observation with whom and what it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct FhirObservation {
    /// Position of the Observation (in the Bundle's entries).
    pub index: usize,
    /// From `subject`: `Patient/{id}` gives `{id}`.
    pub patient: String,
    /// From `device`: `Device/{id}` gives `{id}`.
    pub device: Option<String>,
    pub observation: Observation,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct FhirDecoded {
    pub observations: Vec<FhirObservation>,
    /// `index` is the position of the Observation (in the Bundle's entries).
    pub rejected: Vec<RecordError>,
}

/// Decodes an Observation or a Bundle whose entries are Observations.
pub fn decode(payload: &[u8]) -> Result<FhirDecoded, DecodeError> {
    let root: Value =
        serde_json::from_slice(payload).map_err(|e| DecodeError(format!("not FHIR JSON: {e}")))?;
    let mut out = FhirDecoded::default();
    match root.get("resourceType").and_then(Value::as_str) {
        Some("Observation") => observation(&root, 0, &mut out),
        Some("Bundle") => {
            let entries = root
                .get("entry")
                .and_then(Value::as_array)
                .ok_or_else(|| DecodeError("Bundle has no entry array".into()))?;
            for (i, entry) in entries.iter().enumerate() {
                match entry.get("resource") {
                    Some(r)
                        if r.get("resourceType").and_then(Value::as_str) == Some("Observation") =>
                    {
                        observation(r, i, &mut out)
                    }
                    _ => out.rejected.push(RecordError {
                        index: i,
                        reason: "entry is not an Observation resource".into(),
                    }),
                }
            }
        }
        Some(other) => {
            return Err(DecodeError(format!(
                "resourceType {other:?} is not accepted; send an Observation or a Bundle of Observations"
            )));
        }
        None => return Err(DecodeError("no resourceType: not a FHIR resource".into())),
    }
    Ok(out)
}

fn observation(r: &Value, index: usize, out: &mut FhirDecoded) {
    match observation_inner(r, index) {
        Ok(list) => out.observations.extend(list),
        Err(reason) => out.rejected.push(RecordError { index, reason }),
    }
}

fn reference<'a>(r: &'a Value, field: &str, kind: &str) -> Result<Option<&'a str>, String> {
    let Some(reference) = r
        .get(field)
        .and_then(|s| s.get("reference"))
        .and_then(Value::as_str)
    else {
        return Ok(None);
    };
    reference
        .strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix('/'))
        .map(Some)
        .ok_or_else(|| format!("{field}.reference {reference:?} is not {kind}/{{id}}"))
}

fn loinc_vital(code: &Value) -> Result<Option<VitalSign>, String> {
    let codings = code
        .get("coding")
        .and_then(Value::as_array)
        .ok_or("code has no coding")?;
    let loinc: Vec<&str> = codings
        .iter()
        .filter(|c| c.get("system").and_then(Value::as_str) == Some(LOINC))
        .filter_map(|c| c.get("code").and_then(Value::as_str))
        .collect();
    if loinc.is_empty() {
        return Err("code has no LOINC coding (system http://loinc.org)".into());
    }
    Ok(loinc
        .iter()
        .find_map(|c| VitalSign::lookup(c).filter(|_| c.contains('-'))))
}

fn quantity(vital: VitalSign, r: &Value, time: TimestampMs) -> Result<Observation, String> {
    let q = r
        .get("valueQuantity")
        .ok_or_else(|| format!("{vital} has no valueQuantity"))?;
    let value = q
        .get("value")
        .and_then(Value::as_f64)
        .ok_or_else(|| format!("{vital} valueQuantity has no numeric value"))?;
    let unit = q
        .get("code")
        .and_then(Value::as_str)
        .or_else(|| q.get("unit").and_then(Value::as_str))
        .ok_or_else(|| format!("{vital} valueQuantity has no unit (code or unit)"))?;
    Observation::measured(vital, value, unit, time).map_err(|e| e.to_string())
}

fn observation_inner(r: &Value, index: usize) -> Result<Vec<FhirObservation>, String> {
    let status = r.get("status").and_then(Value::as_str).unwrap_or("");
    if matches!(status, "entered-in-error" | "cancelled") || status.is_empty() {
        return Err(format!(
            "status {status:?} is not a result (final, amended, corrected or preliminary)"
        ));
    }
    let patient = reference(r, "subject", "Patient")?
        .ok_or("no subject (Patient/{id})")?
        .to_string();
    let device = reference(r, "device", "Device")?.map(str::to_string);
    let when = r
        .get("effectiveDateTime")
        .or_else(|| r.get("effectiveInstant"))
        .or_else(|| r.get("effectivePeriod").and_then(|p| p.get("start")))
        .and_then(Value::as_str)
        .ok_or("no effectiveDateTime, effectiveInstant or effectivePeriod.start")?;
    let time = parse_date_time(when).ok_or_else(|| {
        format!("effective time {when:?} is not a FHIR dateTime with a time and zone")
    })?;
    let code = r.get("code").ok_or("no code")?;
    let make = |observation| FhirObservation {
        index,
        patient: patient.clone(),
        device: device.clone(),
        observation,
    };
    if let Some(components) = r.get("component").and_then(Value::as_array) {
        let mut list = Vec::new();
        for (i, c) in components.iter().enumerate() {
            let vital = loinc_vital(c.get("code").ok_or(format!("component {i} has no code"))?)
                .map_err(|e| format!("component {i}: {e}"))?
                .ok_or_else(|| format!("component {i}: not a vital sign medmesh knows"))?;
            list.push(make(
                quantity(vital, c, time).map_err(|e| format!("component {i}: {e}"))?,
            ));
        }
        return Ok(list);
    }
    let vital = loinc_vital(code)?.ok_or("code is not a vital sign medmesh knows")?;
    if vital.is_coded() && r.get("valueQuantity").is_none() {
        return Ok(vec![make(coded(vital, r, time)?)]);
    }
    Ok(vec![make(quantity(vital, r, time)?)])
}

/// A coded reading: consciousness (LOINC 67775-7) whose
/// `valueCodeableConcept` carries an ACVPU answer as a LOINC answer code
/// (`medmesh_model::ACVPU_LOINC_ANSWERS`).
fn coded(vital: VitalSign, r: &Value, time: TimestampMs) -> Result<Observation, String> {
    let concept = r
        .get("valueCodeableConcept")
        .ok_or_else(|| format!("{vital} has no valueCodeableConcept (an ACVPU answer)"))?;
    let codings = concept
        .get("coding")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{vital} valueCodeableConcept has no coding"))?;
    let value = codings
        .iter()
        .filter(|c| c.get("system").and_then(Value::as_str) == Some(LOINC))
        .filter_map(|c| c.get("code").and_then(Value::as_str))
        .find_map(|c| vital.loinc_answer(c))
        .ok_or_else(|| {
            let known: Vec<String> = medmesh_model::ACVPU_LOINC_ANSWERS
                .iter()
                .map(|(code, letter, _)| format!("{code} ({letter})"))
                .collect();
            format!(
                "{vital} valueCodeableConcept has no ACVPU answer; send a LOINC coding \
                 (system http://loinc.org) of {}",
                known.join(", ")
            )
        })?;
    Observation::measured(vital, value, vital.ucum(), time).map_err(|e| e.to_string())
}

/// Parses a FHIR dateTime/instant that carries a time: YYYY-MM-DDThh:mm:ss[.fff](Z|+hh:mm|-hh:mm).
pub fn parse_date_time(s: &str) -> Option<TimestampMs> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut millis = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        millis = format!("{:0<3}", &frac[..digits.min(3)]).parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_min = match rest.as_bytes() {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let two = |a: u8, b: u8| -> Option<i64> {
                (a.is_ascii_digit() && b.is_ascii_digit())
                    .then(|| i64::from((a - b'0') * 10 + (b - b'0')))
            };
            let m = two(*h1, *h2)? * 60 + two(*m1, *m2)?;
            if *sign == b'-' { -m } else { m }
        }
        _ => return None,
    };
    let days = crate::gatt::days_from_civil(y, mo as u32, d as u32);
    Some(((days * 24 + h) * 60 + mi) * 60_000 + se.min(59) * 1000 + millis - offset_min * 60_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hr(value: f64, status: &str) -> Value {
        json!({
            "resourceType": "Observation",
            "status": status,
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
            "subject": {"reference": "Patient/p1"},
            "device": {"reference": "Device/watch-1"},
            "effectiveDateTime": "2026-11-25T09:30:00+01:00",
            "valueQuantity": {"value": value, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"}
        })
    }

    #[test]
    fn single_observation() {
        let d = decode(hr(64.0, "final").to_string().as_bytes()).unwrap();
        assert!(d.rejected.is_empty(), "{:?}", d.rejected);
        let o = &d.observations[0];
        assert_eq!(
            (o.patient.as_str(), o.device.as_deref()),
            ("p1", Some("watch-1"))
        );
        assert_eq!(
            (o.observation.vital, o.observation.value),
            (VitalSign::HeartRate, 64.0)
        );
        assert_eq!(
            Some(o.observation.time_ms),
            parse_date_time("2026-11-25T08:30:00Z")
        );
    }

    #[test]
    fn blood_pressure_panel_components() {
        let bp = json!({
            "resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "subject": {"reference": "Patient/p2"},
            "effectiveDateTime": "2026-11-25T08:30:00Z",
            "component": [
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}, "valueQuantity": {"value": 16, "code": "kPa"}},
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]}, "valueQuantity": {"value": 80, "code": "mm[Hg]"}}
            ]
        });
        let d = decode(bp.to_string().as_bytes()).unwrap();
        let v: Vec<_> = d
            .observations
            .iter()
            .map(|o| (o.observation.vital, o.observation.value.round()))
            .collect();
        assert_eq!(
            v,
            [
                (VitalSign::SystolicBloodPressure, 120.0),
                (VitalSign::DiastolicBloodPressure, 80.0)
            ]
        );
    }

    #[test]
    fn bundle_entries_are_judged_one_by_one() {
        let mut no_subject = hr(70.0, "final");
        no_subject.as_object_mut().unwrap().remove("subject");
        let mut snomed = hr(70.0, "final");
        snomed["code"] =
            json!({"coding": [{"system": "http://snomed.info/sct", "code": "364075005"}]});
        let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": hr(61.0, "final")},
            {"resource": hr(62.0, "entered-in-error")},
            {"resource": {"resourceType": "Patient", "id": "p1"}},
            {"resource": no_subject},
            {"resource": snomed},
            {"resource": hr(900.0, "final")},
            {"resource": hr(63.0, "amended")}
        ]});
        let d = decode(bundle.to_string().as_bytes()).unwrap();
        assert_eq!(
            d.observations
                .iter()
                .map(|o| o.observation.value)
                .collect::<Vec<_>>(),
            [61.0, 63.0]
        );
        let reasons: Vec<_> = d
            .rejected
            .iter()
            .map(|r| (r.index, r.reason.as_str()))
            .collect();
        assert_eq!(
            reasons.iter().map(|r| r.0).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert!(reasons[0].1.contains("entered-in-error"));
        assert!(reasons[1].1.contains("not an Observation"));
        assert!(reasons[2].1.contains("subject"));
        assert!(reasons[3].1.contains("LOINC"));
        assert!(reasons[4].1.contains("plausible"));
    }

    /// After the FHIR R4 vital-signs examples, with the coded value of
    /// LOINC 67775-7: each ACVPU answer is stored as its level (0-4).
    #[test]
    fn consciousness_as_a_loinc_answer() {
        let acvpu = |coding: Value| {
            json!({
                "resourceType": "Observation", "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": "67775-7", "display": "Level of responsiveness"}]},
                "subject": {"reference": "Patient/p1"},
                "effectiveDateTime": "2026-11-25T08:30:00Z",
                "valueCodeableConcept": {"coding": [coding]}
            })
        };
        let entries: Vec<Value> = [
            json!({"system": "http://loinc.org", "code": "LA9340-6", "display": "Alert"}),
            json!({"system": "http://loinc.org", "code": "LA6560-2", "display": "Confused"}),
            json!({"system": "http://loinc.org", "code": "LA17108-4", "display": "Verbal"}),
            json!({"system": "http://loinc.org", "code": "LA17107-6", "display": "Painful"}),
            json!({"system": "http://loinc.org", "code": "LA9343-0", "display": "Unresponsive"}),
            json!({"system": "http://snomed.info/sct", "code": "248234008"}),
            json!({"system": "http://loinc.org", "code": "LA6561-0", "display": "Oriented"}),
        ]
        .into_iter()
        .map(|c| json!({"resource": acvpu(c)}))
        .collect();
        let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": entries});
        let d = decode(bundle.to_string().as_bytes()).unwrap();
        let levels: Vec<_> = d
            .observations
            .iter()
            .map(|o| (o.observation.vital, o.observation.value))
            .collect();
        assert_eq!(
            levels,
            (0..5)
                .map(|l| (VitalSign::Consciousness, f64::from(l)))
                .collect::<Vec<_>>()
        );
        assert_eq!(d.rejected.len(), 2, "{:?}", d.rejected);
        assert!(
            d.rejected[0].reason.contains("LA17108-4 (V)"),
            "{:?}",
            d.rejected
        );
        assert_eq!(d.rejected[1].index, 6);
        // No value at all: said so.
        let mut none = acvpu(json!({}));
        none.as_object_mut().unwrap().remove("valueCodeableConcept");
        let d = decode(none.to_string().as_bytes()).unwrap();
        assert!(d.rejected[0].reason.contains("valueCodeableConcept"));
    }

    #[test]
    fn whole_resource_errors() {
        for bad in [
            &b"{"[..],
            b"[]",
            br#"{"resourceType":"Patient"}"#,
            br#"{"resourceType":"Bundle"}"#,
        ] {
            assert!(decode(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn date_times() {
        assert_eq!(
            parse_date_time("2026-11-25T08:30:00Z"),
            parse_date_time("2026-11-25T03:30:00-05:00")
        );
        assert_eq!(
            parse_date_time("2026-11-25T08:30:00.25Z").unwrap()
                - parse_date_time("2026-11-25T08:30:00Z").unwrap(),
            250
        );
        for bad in [
            "2026-11-25",
            "2026-11-25T08:30:00",
            "2026-13-25T08:30:00Z",
            "2026-11-25T08:30:00+0100",
            "x",
        ] {
            assert_eq!(parse_date_time(bad), None, "{bad}");
        }
    }
}
