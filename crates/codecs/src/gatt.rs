//! Bluetooth GATT health measurements, forwarded raw by a phone or hub.
//!
//! Layouts follow the Bluetooth SIG service specifications: Heart Rate
//! Service (Heart Rate Measurement, 0x2A37), Blood Pressure Service (Blood
//! Pressure Measurement, 0x2A35), Health Thermometer Service (Temperature
//! Measurement, 0x2A1C), Pulse Oximeter Service (PLX Spot-Check
//! Measurement, 0x2A5E; PLX Continuous Measurement, 0x2A5F), Glucose Service
//! (Glucose Measurement, 0x2A18) and Weight Scale Service (Weight
//! Measurement, 0x2A9D). Every characteristic starts with a flags byte that
//! says which optional fields follow; multi-byte fields are little endian.
//!
//! Times: a measurement that carries its own Date Time (year, month, day,
//! hours, minutes, seconds) is taken as UTC; without one (or with an
//! "unknown" date) the gateway's reception time is used.

use crate::ieee11073::{self, Number};
use crate::{DecodeError, Decoded, RecordError};
use medmesh_model::{Observation, TimestampMs, VitalSign};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Characteristic {
    HeartRateMeasurement,
    BloodPressureMeasurement,
    TemperatureMeasurement,
    PlxSpotCheckMeasurement,
    PlxContinuousMeasurement,
    GlucoseMeasurement,
    WeightMeasurement,
    /// Battery Service, Battery Level (0x2A19): device telemetry, not a vital sign.
    BatteryLevel,
}

const TABLE: [(Characteristic, u16, &str); 8] = [
    (
        Characteristic::HeartRateMeasurement,
        0x2A37,
        "heart_rate_measurement",
    ),
    (
        Characteristic::BloodPressureMeasurement,
        0x2A35,
        "blood_pressure_measurement",
    ),
    (
        Characteristic::TemperatureMeasurement,
        0x2A1C,
        "temperature_measurement",
    ),
    (
        Characteristic::PlxSpotCheckMeasurement,
        0x2A5E,
        "plx_spot_check_measurement",
    ),
    (
        Characteristic::PlxContinuousMeasurement,
        0x2A5F,
        "plx_continuous_measurement",
    ),
    (
        Characteristic::GlucoseMeasurement,
        0x2A18,
        "glucose_measurement",
    ),
    (
        Characteristic::WeightMeasurement,
        0x2A9D,
        "weight_measurement",
    ),
    (Characteristic::BatteryLevel, 0x2A19, "battery_level"),
];

/// The Bluetooth base UUID a 16-bit UUID sits in: 0000xxxx-0000-1000-8000-00805f9b34fb.
const BASE_UUID_SUFFIX: &str = "-0000-1000-8000-00805f9b34fb";

impl Characteristic {
    /// Parses "2a37", "0x2A37", "00002a37-0000-1000-8000-00805f9b34fb" or
    /// "heart_rate_measurement".
    pub fn parse(s: &str) -> Option<Characteristic> {
        let lower = s.to_ascii_lowercase();
        if let Some((c, _, _)) = TABLE.iter().find(|(_, _, name)| *name == lower) {
            return Some(*c);
        }
        let short = lower.strip_prefix("0x").unwrap_or(&lower);
        let short = match short.strip_suffix(BASE_UUID_SUFFIX) {
            Some(full) => full.strip_prefix("0000")?,
            None => short,
        };
        let uuid = u16::from_str_radix(short, 16)
            .ok()
            .filter(|_| short.len() == 4)?;
        TABLE
            .iter()
            .find(|(_, u, _)| *u == uuid)
            .map(|(c, _, _)| *c)
    }

    pub fn uuid16(self) -> u16 {
        TABLE
            .iter()
            .find(|(c, _, _)| *c == self)
            .map_or(0, |(_, u, _)| *u)
    }

    pub fn name(self) -> &'static str {
        TABLE
            .iter()
            .find(|(c, _, _)| *c == self)
            .map_or("", |(_, _, n)| *n)
    }
}

/// Reads fields off the characteristic value, naming what is missing.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    what: Characteristic,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], DecodeError> {
        let end = self.pos + n;
        let slice = self.bytes.get(self.pos..end).ok_or_else(|| {
            DecodeError(format!(
                "{} (0x{:04X}): {} bytes end before {field}, which needs {n} more",
                self.what.name(),
                self.what.uuid16(),
                self.bytes.len(),
            ))
        })?;
        self.pos = end;
        Ok(slice)
    }

    fn u8(&mut self, field: &str) -> Result<u8, DecodeError> {
        Ok(self.take(1, field)?[0])
    }

    fn u16(&mut self, field: &str) -> Result<u16, DecodeError> {
        let b = self.take(2, field)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn sfloat(&mut self, field: &str) -> Result<Number, DecodeError> {
        Ok(ieee11073::sfloat(self.u16(field)?))
    }

    fn float(&mut self, field: &str) -> Result<Number, DecodeError> {
        let b = self.take(4, field)?;
        Ok(ieee11073::float(u32::from_le_bytes([
            b[0], b[1], b[2], b[3],
        ])))
    }

    /// A Date Time field; `None` when the device does not know the date.
    fn date_time(&mut self, field: &str) -> Result<Option<TimestampMs>, DecodeError> {
        let b = self.take(7, field)?;
        let year = i64::from(u16::from_le_bytes([b[0], b[1]]));
        let (month, day, h, m, s) = (b[2], b[3], b[4], b[5], b[6]);
        if year < 1582
            || !(1..=12).contains(&month)
            || !(1..=31).contains(&day)
            || h > 23
            || m > 59
            || s > 59
        {
            return Ok(None);
        }
        let days = days_from_civil(year, u32::from(month), u32::from(day));
        Ok(Some(
            ((days * 24 + i64::from(h)) * 60 + i64::from(m)) * 60_000 + i64::from(s) * 1000,
        ))
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (year, month, day) of a day count since 1970-01-01 (inverse of the above).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Collects the measured fields of one characteristic value.
struct Fields {
    out: Decoded,
    index: usize,
}

impl Fields {
    fn new() -> Fields {
        Fields {
            out: Decoded::default(),
            index: 0,
        }
    }

    fn add(
        &mut self,
        field: &str,
        vital: VitalSign,
        number: Result<f64, &str>,
        unit: &str,
        time_ms: TimestampMs,
    ) {
        let result = number.map_err(str::to_string).and_then(|v| {
            Observation::measured(vital, v, unit, time_ms).map_err(|e| e.to_string())
        });
        match result {
            Ok(o) => self.out.accept(self.index, o),
            Err(reason) => self.out.rejected.push(RecordError {
                index: self.index,
                reason: format!("{field}: {reason}"),
            }),
        }
        self.index += 1;
    }
}

/// Decodes one characteristic value received at `received_ms`.
pub fn decode(
    what: Characteristic,
    bytes: &[u8],
    received_ms: TimestampMs,
) -> Result<Decoded, DecodeError> {
    let mut c = Cursor {
        bytes,
        pos: 0,
        what,
    };
    if what == Characteristic::BatteryLevel {
        // Battery Service: one uint8, the remaining charge in percent
        // (0-100); 101-255 are reserved. No flags byte.
        let percent = c.u8("the battery level")?;
        if percent > 100 {
            return Err(DecodeError(format!(
                "battery_level (0x2A19): {percent} is a reserved value (0-100 %)"
            )));
        }
        let mut out = Decoded::default();
        out.device.push(medmesh_model::DeviceReport::Battery {
            percent: f64::from(percent),
            time_ms: received_ms,
        });
        return Ok(out);
    }
    let flags = c.u8("the flags")?;
    let bit = |n: u8| flags & (1 << n) != 0;
    let mut f = Fields::new();
    match what {
        Characteristic::HeartRateMeasurement => {
            // Flags: bit 0 value format (uint8 / uint16), bits 1-2 sensor
            // contact, bit 3 energy expended present, bit 4 RR-intervals present.
            let bpm = if bit(0) {
                c.u16("the heart rate (uint16)")?
            } else {
                u16::from(c.u8("the heart rate (uint8)")?)
            };
            if bit(3) {
                c.u16("the energy expended")?;
            }
            let rr_bytes = bytes.len() - c.pos;
            // The flag promises at least one RR-interval: none means the
            // packet was cut short, and its rate bytes cannot be trusted.
            if bit(4) && (rr_bytes == 0 || !rr_bytes.is_multiple_of(2)) {
                return Err(DecodeError(format!(
                    "heart_rate_measurement (0x2A37): the RR-interval flag is set but {rr_bytes} \
                     bytes remain (RR-intervals take 2 bytes each, at least one): packet truncated"
                )));
            }
            // Sensor contact supported (bit 2) but not detected (bit 1): the
            // strap is off the skin; the rate is not a measurement. A
            // technical condition, never a clinical reading.
            let no_contact = bit(2) && !bit(1);
            f.add(
                "heart rate",
                VitalSign::HeartRate,
                if no_contact {
                    Err("sensor contact not detected (flags bits 1-2): no measurement")
                } else {
                    Ok(f64::from(bpm))
                },
                "/min",
                received_ms,
            );
        }
        Characteristic::BloodPressureMeasurement => {
            // Flags: bit 0 units (mmHg / kPa), bit 1 time stamp, bit 2 pulse
            // rate, bit 3 user ID, bit 4 measurement status.
            let unit = if bit(0) { "kPa" } else { "mm[Hg]" };
            let systolic = c.sfloat("the systolic pressure")?;
            let diastolic = c.sfloat("the diastolic pressure")?;
            let mean = c.sfloat("the mean arterial pressure")?;
            let time = if bit(1) {
                c.date_time("the time stamp")?
            } else {
                None
            }
            .unwrap_or(received_ms);
            let pulse = if bit(2) {
                Some(c.sfloat("the pulse rate")?)
            } else {
                None
            };
            if bit(3) {
                c.u8("the user ID")?;
            }
            if bit(4) {
                c.u16("the measurement status")?;
            }
            f.add(
                "systolic",
                VitalSign::SystolicBloodPressure,
                systolic.value(),
                unit,
                time,
            );
            f.add(
                "diastolic",
                VitalSign::DiastolicBloodPressure,
                diastolic.value(),
                unit,
                time,
            );
            f.add(
                "mean arterial pressure",
                VitalSign::MeanBloodPressure,
                mean.value(),
                unit,
                time,
            );
            if let Some(p) = pulse {
                f.add("pulse rate", VitalSign::HeartRate, p.value(), "/min", time);
            }
        }
        Characteristic::TemperatureMeasurement => {
            // Flags: bit 0 units (Celsius / Fahrenheit), bit 1 time stamp,
            // bit 2 temperature type.
            let unit = if bit(0) { "[degF]" } else { "Cel" };
            let t = c.float("the temperature")?;
            let time = if bit(1) {
                c.date_time("the time stamp")?
            } else {
                None
            }
            .unwrap_or(received_ms);
            if bit(2) {
                c.u8("the temperature type")?;
            }
            f.add(
                "temperature",
                VitalSign::BodyTemperature,
                t.value(),
                unit,
                time,
            );
        }
        Characteristic::PlxSpotCheckMeasurement => {
            // Flags: bit 0 time stamp, bit 1 measurement status, bit 2 device
            // and sensor status, bit 3 pulse amplitude index.
            let spo2 = c.sfloat("SpO2")?;
            let pr = c.sfloat("the pulse rate")?;
            let time = if bit(0) {
                c.date_time("the time stamp")?
            } else {
                None
            }
            .unwrap_or(received_ms);
            if bit(1) {
                c.u16("the measurement status")?;
            }
            if bit(2) {
                c.take(3, "the device and sensor status")?;
            }
            if bit(3) {
                c.sfloat("the pulse amplitude index")?;
            }
            f.add("SpO2", VitalSign::OxygenSaturation, spo2.value(), "%", time);
            f.add("pulse rate", VitalSign::HeartRate, pr.value(), "/min", time);
        }
        Characteristic::PlxContinuousMeasurement => {
            // Flags: bit 0 SpO2PR-Fast, bit 1 SpO2PR-Slow, bit 2 measurement
            // status, bit 3 device and sensor status, bit 4 pulse amplitude
            // index. The normal-averaged pair always comes first.
            let spo2 = c.sfloat("SpO2 (normal)")?;
            let pr = c.sfloat("the pulse rate (normal)")?;
            for (present, what) in [(bit(0), "SpO2PR-Fast"), (bit(1), "SpO2PR-Slow")] {
                if present {
                    c.take(4, what)?;
                }
            }
            if bit(2) {
                c.u16("the measurement status")?;
            }
            if bit(3) {
                c.take(3, "the device and sensor status")?;
            }
            if bit(4) {
                c.sfloat("the pulse amplitude index")?;
            }
            f.add(
                "SpO2",
                VitalSign::OxygenSaturation,
                spo2.value(),
                "%",
                received_ms,
            );
            f.add(
                "pulse rate",
                VitalSign::HeartRate,
                pr.value(),
                "/min",
                received_ms,
            );
        }
        Characteristic::GlucoseMeasurement => {
            // Flags: bit 0 time offset, bit 1 concentration with type and
            // sample location, bit 2 units (kg/L / mol/L), bit 3 sensor status
            // annunciation, bit 4 context information follows.
            c.u16("the sequence number")?;
            let base = c.date_time("the base time")?;
            let offset_min = if bit(0) {
                c.u16("the time offset")? as i16
            } else {
                0
            };
            let time = base.map_or(received_ms, |t| t + i64::from(offset_min) * 60_000);
            if !bit(1) {
                f.add(
                    "glucose",
                    VitalSign::BloodGlucose,
                    Err("the record carries no concentration"),
                    "mg/dL",
                    time,
                );
            } else {
                let concentration = c.sfloat("the glucose concentration")?;
                c.u8("the type and sample location")?;
                if bit(3) {
                    c.u16("the sensor status annunciation")?;
                }
                // kg/L x 100,000 = mg/dL; mol/L x 1,000 = mmol/L.
                let (factor, unit) = if bit(2) {
                    (1e3, "mmol/L")
                } else {
                    (1e5, "mg/dL")
                };
                f.add(
                    "glucose",
                    VitalSign::BloodGlucose,
                    concentration.value().map(|v| v * factor),
                    unit,
                    time,
                );
            }
        }
        Characteristic::WeightMeasurement => {
            // Flags: bit 0 units (SI, 0.005 kg / imperial, 0.01 lb), bit 1 time
            // stamp, bit 2 user ID, bit 3 BMI and height.
            let raw = c.u16("the weight")?;
            let time = if bit(1) {
                c.date_time("the time stamp")?
            } else {
                None
            }
            .unwrap_or(received_ms);
            if bit(2) {
                c.u8("the user ID")?;
            }
            if bit(3) {
                c.take(4, "the BMI and height")?;
            }
            let (resolution, unit) = if bit(0) {
                (0.01, "[lb_av]")
            } else {
                (0.005, "kg")
            };
            // 0xFFFF means "measurement unsuccessful".
            let weight = if raw == 0xFFFF {
                Err("the scale reported an unsuccessful measurement")
            } else {
                Ok(f64::from(raw) * resolution)
            };
            f.add("weight", VitalSign::BodyWeight, weight, unit, time);
        }
        // Decoded above, before the flags byte it does not have.
        Characteristic::BatteryLevel => {}
    }
    Ok(f.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: TimestampMs = 1_790_000_000_000;
    /// 2026-11-25 08:30:00 UTC as a GATT Date Time: year 2026 (0x07EA), 11, 25, 8, 30, 0.
    const DATE: [u8; 7] = [0xEA, 0x07, 11, 25, 8, 30, 0];
    const DATE_MS: TimestampMs = 1_795_595_400_000;

    fn values(d: &Decoded) -> Vec<(VitalSign, f64, TimestampMs)> {
        d.observations
            .iter()
            .map(|o| (o.vital, (o.value * 1e6).round() / 1e6, o.time_ms))
            .collect()
    }

    fn ok(what: Characteristic, bytes: &[u8]) -> Decoded {
        decode(what, bytes, NOW).unwrap_or_else(|e| panic!("{bytes:02X?}: {e}"))
    }

    #[test]
    fn characteristic_names() {
        for s in [
            "2a37",
            "0x2A37",
            "00002a37-0000-1000-8000-00805f9b34fb",
            "heart_rate_measurement",
        ] {
            assert_eq!(
                Characteristic::parse(s),
                Some(Characteristic::HeartRateMeasurement),
                "{s}"
            );
        }
        assert_eq!(Characteristic::parse("2a00"), None);
        assert_eq!(
            Characteristic::parse("00002a37-0000-1000-8000-00805f9b34fc"),
            None
        );
        assert_eq!(Characteristic::parse("12a37"), None);
    }

    #[test]
    fn date_time_is_utc() {
        let mut c = Cursor {
            bytes: &DATE,
            pos: 0,
            what: Characteristic::WeightMeasurement,
        };
        assert_eq!(c.date_time("t").unwrap(), Some(DATE_MS));
        // Year 0 means "unknown": the reception time is used instead.
        let mut c = Cursor {
            bytes: &[0, 0, 11, 25, 8, 30, 0],
            pos: 0,
            what: Characteristic::WeightMeasurement,
        };
        assert_eq!(c.date_time("t").unwrap(), None);
    }

    /// Heart Rate Measurement: every combination of the flag bits.
    #[test]
    fn heart_rate_measurement_all_flags() {
        for flags in 0u8..32 {
            let mut b = vec![flags];
            if flags & 1 != 0 {
                b.extend_from_slice(&300u16.to_le_bytes()); // uint16 format
            } else {
                b.push(72); // uint8 format
            }
            if flags & 0x08 != 0 {
                b.extend_from_slice(&1500u16.to_le_bytes()); // energy expended, kJ
            }
            if flags & 0x10 != 0 {
                b.extend_from_slice(&[0x00, 0x04, 0x33, 0x03]); // RR 1024/1024 s, 819/1024 s
            }
            let want = if flags & 1 != 0 { 300.0 } else { 72.0 };
            let decoded = ok(Characteristic::HeartRateMeasurement, &b);
            if flags & 0b110 == 0b100 {
                // Contact supported, not detected: rejected, nothing stored.
                assert_eq!(values(&decoded), vec![], "flags {flags:#04x}");
                assert!(decoded.rejected[0].reason.contains("sensor contact"));
                continue;
            }
            assert_eq!(
                values(&decoded),
                vec![(VitalSign::HeartRate, want, NOW)],
                "flags {flags:#04x}"
            );
        }
        assert!(
            decode(Characteristic::HeartRateMeasurement, &[0x01, 0x48], NOW).is_err(),
            "uint16 cut short"
        );
        assert!(
            decode(
                Characteristic::HeartRateMeasurement,
                &[0x10, 0x48, 0x00],
                NOW
            )
            .is_err(),
            "odd RR bytes"
        );
        // uint16 257 with the RR flag and no RR-interval: cut short.
        let err = decode(
            Characteristic::HeartRateMeasurement,
            &[0x11, 0x01, 0x01],
            NOW,
        )
        .unwrap_err();
        assert!(err.0.contains("truncated"), "{err}");
    }

    /// Blood Pressure Measurement: 120/80 mmHg, MAP 93, with every optional field.
    #[test]
    fn blood_pressure_measurement_all_flags() {
        for flags in 0u8..32 {
            let kpa = flags & 1 != 0;
            let mut b = vec![flags];
            if kpa {
                // 16.0, 10.7, 12.4 kPa: mantissas 160, 107, 124 with exponent -1 (0xF).
                for m in [160u16, 107, 124] {
                    b.extend_from_slice(&(0xF000 | m).to_le_bytes());
                }
            } else {
                for m in [120u16, 80, 93] {
                    b.extend_from_slice(&m.to_le_bytes());
                }
            }
            if flags & 0x02 != 0 {
                b.extend_from_slice(&DATE);
            }
            if flags & 0x04 != 0 {
                b.extend_from_slice(&72u16.to_le_bytes()); // pulse rate SFLOAT
            }
            if flags & 0x08 != 0 {
                b.push(1); // user ID
            }
            if flags & 0x10 != 0 {
                b.extend_from_slice(&[0, 0]); // measurement status
            }
            let d = ok(Characteristic::BloodPressureMeasurement, &b);
            let time = if flags & 0x02 != 0 { DATE_MS } else { NOW };
            let v = values(&d);
            assert_eq!(
                v.len(),
                3 + usize::from(flags & 0x04 != 0),
                "flags {flags:#04x}"
            );
            if kpa {
                assert_eq!(v[0], (VitalSign::SystolicBloodPressure, 120.009852, time));
                assert_eq!(v[1].0, VitalSign::DiastolicBloodPressure);
            } else {
                assert_eq!(v[0], (VitalSign::SystolicBloodPressure, 120.0, time));
                assert_eq!(v[1], (VitalSign::DiastolicBloodPressure, 80.0, time));
                assert_eq!(v[2], (VitalSign::MeanBloodPressure, 93.0, time));
            }
            if flags & 0x04 != 0 {
                assert_eq!(v[3], (VitalSign::HeartRate, 72.0, time));
            }
        }
    }

    #[test]
    fn special_values_reject_only_their_field() {
        // Systolic NaN (0x07FF), diastolic 80, MAP NRes (0x0800), pulse +INF (0x07FE).
        let b = [0x04, 0xFF, 0x07, 0x50, 0x00, 0x00, 0x08, 0xFE, 0x07];
        let d = ok(Characteristic::BloodPressureMeasurement, &b);
        assert_eq!(
            values(&d),
            vec![(VitalSign::DiastolicBloodPressure, 80.0, NOW)]
        );
        let reasons: Vec<_> = d
            .rejected
            .iter()
            .map(|r| (r.index, r.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 3);
        assert!(
            reasons[0].1.starts_with("systolic") && reasons[0].1.contains("NaN"),
            "{reasons:?}"
        );
        assert!(reasons[1].1.contains("NRes"));
        assert!(reasons[2].1.contains("INFINITY"));
        assert_eq!(reasons.iter().map(|r| r.0).collect::<Vec<_>>(), [0, 2, 3]);
    }

    /// Temperature Measurement: 36.6 Cel and 98.6 degF, FLOAT, all flags.
    #[test]
    fn temperature_measurement_all_flags() {
        for flags in 0u8..8 {
            let mut b = vec![flags];
            let raw: u32 = if flags & 1 != 0 {
                0xFF00_03DA
            } else {
                0xFF00_016E
            }; // 986e-1 / 366e-1
            b.extend_from_slice(&raw.to_le_bytes());
            if flags & 0x02 != 0 {
                b.extend_from_slice(&DATE);
            }
            if flags & 0x04 != 0 {
                b.push(2); // temperature type: body (general)
            }
            let time = if flags & 0x02 != 0 { DATE_MS } else { NOW };
            let want = if flags & 1 != 0 { 37.0 } else { 36.6 };
            assert_eq!(
                values(&ok(Characteristic::TemperatureMeasurement, &b)),
                vec![(VitalSign::BodyTemperature, want, time)],
                "flags {flags:#04x}"
            );
        }
        // FLOAT NaN: rejected with the reason, not stored.
        let d = ok(
            Characteristic::TemperatureMeasurement,
            &[0x00, 0xFF, 0xFF, 0x7F, 0x00],
        );
        assert!(d.observations.is_empty() && d.rejected[0].reason.contains("NaN"));
    }

    /// PLX Spot-Check Measurement: SpO2 97 %, pulse 72/min, all flags.
    #[test]
    fn plx_spot_check_all_flags() {
        for flags in 0u8..32 {
            let mut b = vec![flags, 97, 0, 72, 0];
            if flags & 0x01 != 0 {
                b.extend_from_slice(&DATE);
            }
            if flags & 0x02 != 0 {
                b.extend_from_slice(&[0, 0]);
            }
            if flags & 0x04 != 0 {
                b.extend_from_slice(&[0, 0, 0]);
            }
            if flags & 0x08 != 0 {
                b.extend_from_slice(&[0x20, 0xF0]); // PAI 3.2
            }
            let time = if flags & 0x01 != 0 { DATE_MS } else { NOW };
            assert_eq!(
                values(&ok(Characteristic::PlxSpotCheckMeasurement, &b)),
                vec![
                    (VitalSign::OxygenSaturation, 97.0, time),
                    (VitalSign::HeartRate, 72.0, time)
                ],
                "flags {flags:#04x}"
            );
        }
    }

    /// PLX Continuous Measurement: the normal pair, all optional fields.
    #[test]
    fn plx_continuous_all_flags() {
        for flags in 0u8..32 {
            let mut b = vec![flags, 96, 0, 80, 0];
            for (bit, len) in [(0x01, 4), (0x02, 4), (0x04, 2), (0x08, 3), (0x10, 2)] {
                if flags & bit != 0 {
                    b.extend(std::iter::repeat_n(0u8, len));
                }
            }
            assert_eq!(
                values(&ok(Characteristic::PlxContinuousMeasurement, &b)),
                vec![
                    (VitalSign::OxygenSaturation, 96.0, NOW),
                    (VitalSign::HeartRate, 80.0, NOW)
                ],
                "flags {flags:#04x}"
            );
        }
    }

    /// Glucose Measurement: 95 mg/dL as 0.00095 kg/L, 5.5 mmol/L as 0.0055 mol/L.
    #[test]
    fn glucose_measurement() {
        // Flags 0x03: time offset and concentration (kg/L); offset +30 min.
        let mut b = vec![0x03, 0x01, 0x00];
        b.extend_from_slice(&DATE);
        b.extend_from_slice(&30u16.to_le_bytes());
        b.extend_from_slice(&[0x5F, 0xB0, 0x11]); // SFLOAT 95e-5, capillary whole blood / finger
        assert_eq!(
            values(&ok(Characteristic::GlucoseMeasurement, &b)),
            vec![(VitalSign::BloodGlucose, 95.0, DATE_MS + 30 * 60_000)]
        );
        // Flags 0x0E: concentration in mol/L plus sensor status; no offset.
        let mut b = vec![0x0E, 0x02, 0x00];
        b.extend_from_slice(&DATE);
        b.extend_from_slice(&[0x37, 0xC0, 0x11, 0x00, 0x00]); // SFLOAT 55e-4
        assert_eq!(
            values(&ok(Characteristic::GlucoseMeasurement, &b)),
            vec![(VitalSign::BloodGlucose, 99.0858, DATE_MS)]
        );
        // No concentration at all: reported, nothing stored.
        let mut b = vec![0x00, 0x03, 0x00];
        b.extend_from_slice(&DATE);
        let d = ok(Characteristic::GlucoseMeasurement, &b);
        assert!(d.observations.is_empty() && d.rejected[0].reason.contains("no concentration"));
    }

    /// Weight Measurement: 70 kg (14000 x 0.005) and 150 lb (15000 x 0.01), all flags.
    #[test]
    fn weight_measurement_all_flags() {
        for flags in 0u8..16 {
            let imperial = flags & 1 != 0;
            let mut b = vec![flags];
            b.extend_from_slice(&(if imperial { 15000u16 } else { 14000 }).to_le_bytes());
            if flags & 0x02 != 0 {
                b.extend_from_slice(&DATE);
            }
            if flags & 0x04 != 0 {
                b.push(3);
            }
            if flags & 0x08 != 0 {
                b.extend_from_slice(&[0xF4, 0x00, 0xB0, 0x06]);
            }
            let time = if flags & 0x02 != 0 { DATE_MS } else { NOW };
            let want = if imperial { 68.038856 } else { 70.0 };
            assert_eq!(
                values(&ok(Characteristic::WeightMeasurement, &b)),
                vec![(VitalSign::BodyWeight, want, time)],
                "flags {flags:#04x}"
            );
        }
        let d = ok(Characteristic::WeightMeasurement, &[0x00, 0xFF, 0xFF]);
        assert!(d.observations.is_empty() && d.rejected[0].reason.contains("unsuccessful"));
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        let mut full = vec![0x1Fu8, 0x78, 0x00, 0x50, 0x00, 0x5D, 0x00];
        full.extend_from_slice(&DATE);
        full.extend_from_slice(&[0x48, 0x00, 0x01, 0x00, 0x00]);
        for what in TABLE.iter().map(|(c, _, _)| *c) {
            for cut in 0..full.len() {
                let _ = decode(what, &full[..cut], NOW);
            }
        }
        let err = decode(Characteristic::BloodPressureMeasurement, &full[..5], NOW).unwrap_err();
        assert!(err.to_string().contains("mean arterial pressure"), "{err}");
        assert!(
            decode(Characteristic::WeightMeasurement, &[], NOW)
                .unwrap_err()
                .to_string()
                .contains("flags")
        );
    }

    #[test]
    fn battery_level_is_a_device_report() {
        assert_eq!(
            Characteristic::parse("2a19"),
            Some(Characteristic::BatteryLevel)
        );
        let d = ok(Characteristic::BatteryLevel, &[17]);
        assert!(d.observations.is_empty());
        assert_eq!(
            d.device,
            vec![medmesh_model::DeviceReport::Battery {
                percent: 17.0,
                time_ms: NOW
            }]
        );
        let err = decode(Characteristic::BatteryLevel, &[101], NOW).unwrap_err();
        assert!(err.to_string().contains("reserved"), "{err}");
        assert!(decode(Characteristic::BatteryLevel, &[], NOW).is_err());
    }
}
