//! IEEE 11073-20601 numeric formats used by Bluetooth health devices.
//!
//! SFLOAT is 16 bits: a 4-bit signed exponent (high nibble) and a 12-bit
//! signed mantissa; FLOAT is 32 bits: an 8-bit signed exponent (high byte) and
//! a 24-bit signed mantissa. The value is mantissa x 10^exponent. A few raw
//! values (with exponent 0) are reserved to say there is no number.

/// A decoded IEEE 11073 number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Value(f64),
    /// Not a number: the device could not measure.
    NaN,
    /// Not at this resolution: the value cannot be expressed in this format.
    NRes,
    PositiveInfinity,
    NegativeInfinity,
    /// Reserved for future use.
    Reserved,
}

impl Number {
    /// The value, or why there is none, as a reason for the sender.
    pub fn value(self) -> Result<f64, &'static str> {
        match self {
            Number::Value(v) => Ok(v),
            Number::NaN => Err("the device reported NaN (not a number)"),
            Number::NRes => Err("the device reported NRes (not at this resolution)"),
            Number::PositiveInfinity => Err("the device reported +INFINITY"),
            Number::NegativeInfinity => Err("the device reported -INFINITY"),
            Number::Reserved => Err("the device sent a reserved value"),
        }
    }
}

/// mantissa x 10^exponent, computed so that decimal values come out as the
/// nearest double (120.5, not 120.50000000000001): dividing by an exact power
/// of ten rounds once, multiplying by 0.1 would round twice.
fn scale(mantissa: i32, exponent: i32) -> f64 {
    let m = f64::from(mantissa);
    if exponent >= 0 {
        m * 10f64.powi(exponent)
    } else {
        m / 10f64.powi(-exponent)
    }
}

pub fn sfloat(raw: u16) -> Number {
    match raw {
        0x07FF => Number::NaN,
        0x0800 => Number::NRes,
        0x07FE => Number::PositiveInfinity,
        0x0802 => Number::NegativeInfinity,
        0x0801 => Number::Reserved,
        _ => {
            // Sign-extend the 12-bit mantissa and the 4-bit exponent.
            let mantissa = i32::from(((raw << 4) as i16) >> 4);
            let exponent = i32::from((raw as i16) >> 12);
            Number::Value(scale(mantissa, exponent))
        }
    }
}

pub fn float(raw: u32) -> Number {
    match raw {
        0x007F_FFFF => Number::NaN,
        0x0080_0000 => Number::NRes,
        0x007F_FFFE => Number::PositiveInfinity,
        0x0080_0002 => Number::NegativeInfinity,
        0x0080_0001 => Number::Reserved,
        _ => {
            let mantissa = ((raw << 8) as i32) >> 8;
            let exponent = i32::from((raw >> 24) as i8);
            Number::Value(scale(mantissa, exponent))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sfloat_values() {
        assert_eq!(sfloat(0x0078), Number::Value(120.0)); // 120 x 10^0
        assert_eq!(sfloat(0xF16D), Number::Value(36.5)); // 365 x 10^-1
        assert_eq!(sfloat(0x2001), Number::Value(100.0)); // 1 x 10^2
        assert_eq!(sfloat(0x0FFF), Number::Value(-1.0)); // mantissa 0xFFF is -1
        assert_eq!(sfloat(0x0801 + 0x1000), Number::Value(-2047.0 * 10.0)); // exponent 1 is not special
        assert_eq!(sfloat(0xB05F), Number::Value(0.00095)); // 95 x 10^-5
    }

    #[test]
    fn sfloat_special_values() {
        assert_eq!(sfloat(0x07FF), Number::NaN);
        assert_eq!(sfloat(0x0800), Number::NRes);
        assert_eq!(sfloat(0x07FE), Number::PositiveInfinity);
        assert_eq!(sfloat(0x0802), Number::NegativeInfinity);
        assert_eq!(sfloat(0x0801), Number::Reserved);
        assert!(sfloat(0x07FF).value().unwrap_err().contains("NaN"));
    }

    #[test]
    fn float_values_and_special_values() {
        assert_eq!(float(0xFF00_016E), Number::Value(36.6)); // 366 x 10^-1
        assert_eq!(float(0xFE00_2693), Number::Value(98.75)); // 9875 x 10^-2
        assert_eq!(float(0x00FF_FFFF), Number::Value(-1.0));
        assert_eq!(float(0x007F_FFFF), Number::NaN);
        assert_eq!(float(0x0080_0000), Number::NRes);
        assert_eq!(float(0x007F_FFFE), Number::PositiveInfinity);
        assert_eq!(float(0x0080_0002), Number::NegativeInfinity);
        assert_eq!(float(0x0080_0001), Number::Reserved);
    }
}
