//! Comparison of Kubernetes quantities as the API server stores them. It respells them
//! (`1024Mi` comes back as `1Gi`, `1000m` as `1`) and, in core ResourceLists (LimitRange and
//! ResourceQuota maps), rounds them up to milli precision (`5n` and `0.5m` come back as `1m`:
//! core/v1 SetDefaults_ResourceList). Desired and live values are compared by that stored value,
//! never by their spelling; otherwise a converged object would look changed forever.

use std::collections::BTreeMap;

/// An amount in milli-units (1 = 1m). Wide enough for any Kubernetes quantity.
pub type Milli = i128;

/// Amounts per resource name, as in a quota's `hard` or `used`.
pub type Amounts = BTreeMap<String, Milli>;

/// A quantity as a whole number of nano-units (10^-9). Exact up to about 10^29 units; larger
/// (decimal) values saturate, far beyond anything a quota counts. [`canonical`] is exact for any
/// value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nanos(pub i128);

/// The largest magnitude the API server keeps of a quantity with a binary suffix: larger ones
/// are capped to it (apimachinery caps BinarySI quantities at 2^63-1 units; decimal ones it
/// keeps whole).
pub const MAX_BINARY: Nanos = Nanos(i64::MAX as i128 * NANOS_IN_ONE);

const NANOS_IN_ONE: i128 = 1_000_000_000;

/// How a quantity was written, which decides how the API server spells it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    BinarySi,
    DecimalSi,
    DecimalExponent,
}

/// An exact quantity: `digits * 10^exponent` units, `digits` without leading or trailing zeros
/// (empty for zero, whose exponent is 0).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Exact {
    negative: bool,
    digits: String,
    exponent: i64,
    format: Format,
}

/// Reads a quantity exactly as apimachinery's `resource.ParseQuantity` does, to the value it
/// keeps: `<sign><digits>[.<digits>]<suffix>` with a binary suffix (Ki..Ei), a decimal one (n,
/// u, m, "", k, M, G, T, P, E) or a decimal exponent (`e3`, `E-2`); no white space; any number
/// of digits; no digit at all reads as zero (`.`, `Mi`). Precision finer than a nano-unit rounds
/// up (away from zero); binary quantities over 2^63-1 units are capped. `None` for what it
/// refuses.
fn read(input: &str) -> Option<Exact> {
    let (negative, rest) = match input.as_bytes().first()? {
        b'-' => (true, &input[1..]),
        b'+' => (false, &input[1..]),
        _ => (false, input),
    };
    let zero = |format| Exact {
        negative: false,
        digits: String::new(),
        exponent: 0,
        format,
    };
    // A sign followed by nothing but zeros (or by nothing) reads as zero.
    if rest.bytes().all(|b| b == b'0') {
        return Some(zero(Format::DecimalSi));
    }
    let number_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (whole, after) = rest.split_at(number_end);
    let (fraction, suffix) = match after.strip_prefix('.') {
        Some(after_point) => {
            let end = after_point
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after_point.len());
            after_point.split_at(end)
        }
        None => ("", after),
    };
    let (exp10, exp2, format) = interpret_suffix(suffix)?;
    let digits = format!("{whole}{fraction}");
    let digits = times_power_of_two(digits.trim_start_matches('0'), exp2);
    let exponent = i64::from(exp10) - fraction.len() as i64;
    let mut exact = normalized(negative, digits, exponent, format);
    if format == Format::BinarySi && exact.greater_than_whole(i64::MAX as u64) {
        exact = normalized(negative, i64::MAX.to_string(), 0, format);
    }
    Some(exact.rounded_up_to(-9))
}

/// The suffix as apimachinery reads it: letters of `eEinumkKMGTP`, then an optional sign and
/// digits, and nothing else; the decimal and binary exponents it stands for, and its format.
fn interpret_suffix(suffix: &str) -> Option<(i32, u32, Format)> {
    let letters_end = suffix
        .find(|c: char| !"eEinumkKMGTP".contains(c))
        .unwrap_or(suffix.len());
    let tail = &suffix[letters_end..];
    let tail_digits = tail.strip_prefix(['+', '-']).unwrap_or(tail);
    if !tail_digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let decimal = |e: i32| Some((e, 0, Format::DecimalSi));
    let binary = |e: u32| Some((0, e, Format::BinarySi));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        _ => {
            let exponent = suffix.strip_prefix(['e', 'E']).filter(|e| !e.is_empty())?;
            // strconv.ParseInt(.., 64), then int32(..), as apimachinery converts it.
            let exponent: i64 = exponent.parse().ok()?;
            Some((exponent as i32, 0, Format::DecimalExponent))
        }
    }
}

/// A decimal digit string times 2^exp (exact, by doubling).
fn times_power_of_two(digits: &str, exp: u32) -> String {
    let mut value: Vec<u8> = digits.bytes().rev().map(|b| b - b'0').collect();
    for _ in 0..exp {
        let mut carry = 0;
        for d in value.iter_mut() {
            let doubled = *d * 2 + carry;
            *d = doubled % 10;
            carry = doubled / 10;
        }
        if carry > 0 {
            value.push(carry);
        }
    }
    value.iter().rev().map(|d| char::from(b'0' + d)).collect()
}

/// Adds one to a decimal digit string.
fn plus_one(digits: &str) -> String {
    let mut value: Vec<u8> = digits.bytes().collect();
    for d in value.iter_mut().rev() {
        if *d == b'9' {
            *d = b'0';
        } else {
            *d += 1;
            return String::from_utf8(value).expect("digits");
        }
    }
    format!("1{}", String::from_utf8(value).expect("digits"))
}

fn normalized(negative: bool, digits: String, exponent: i64, format: Format) -> Exact {
    let digits = digits.trim_start_matches('0');
    let significant = digits.trim_end_matches('0');
    if significant.is_empty() {
        return Exact {
            negative: false,
            digits: String::new(),
            exponent: 0,
            format,
        };
    }
    Exact {
        negative,
        exponent: exponent + (digits.len() - significant.len()) as i64,
        digits: significant.to_owned(),
        format,
    }
}

impl Exact {
    /// Rounded up (away from zero) to a multiple of 10^`exponent` units.
    fn rounded_up_to(self, exponent: i64) -> Exact {
        if self.digits.is_empty() || self.exponent >= exponent {
            return self;
        }
        let kept = self.digits.len() as i64 - (exponent - self.exponent);
        let digits = if kept <= 0 {
            "1".to_owned()
        } else {
            // Not all dropped digits are zero: the digits carry no trailing zero.
            plus_one(&self.digits[..kept as usize])
        };
        normalized(self.negative, digits, exponent, self.format)
    }

    /// Whether the magnitude exceeds `limit` whole units.
    fn greater_than_whole(&self, limit: u64) -> bool {
        let integer_digits = self.digits.len() as i64 + self.exponent;
        let limit = limit.to_string();
        if integer_digits != limit.len() as i64 {
            return integer_digits > limit.len() as i64;
        }
        let mut padded = self.digits.clone();
        padded.extend(std::iter::repeat_n(
            '0',
            limit.len().saturating_sub(padded.len()),
        ));
        padded.as_str() > limit.as_str()
    }

    /// The value the API server reads back after writing this one: its canonical spelling
    /// loses the exponent of a decimal-SI value of 10^21 or more whose digits end in zeros
    /// (there is no SI suffix past E, so `1000000000000000000000` is stored as `1`).
    fn spelled_back(self) -> Exact {
        let format = match self.format {
            Format::BinarySi if !self.greater_than_whole(1023) || self.exponent < 0 => {
                Format::DecimalSi
            }
            other => other,
        };
        if format != Format::DecimalSi || self.exponent < 21 {
            return self;
        }
        let canonical_exponent = self.exponent - self.exponent.rem_euclid(3);
        let mantissa_zeros = (self.exponent - canonical_exponent) as usize;
        let mantissa = format!("{}{}", self.digits, "0".repeat(mantissa_zeros));
        normalized(self.negative, mantissa, 0, self.format)
    }

    fn nanos(&self) -> Nanos {
        if self.digits.is_empty() {
            return Nanos(0);
        }
        let scale = self.exponent + 9;
        let magnitude = if self.digits.len() as i64 + scale > 38 {
            i128::MAX / 2
        } else {
            let value: i128 = self.digits.parse().expect("at most 38 digits");
            value * 10i128.pow(scale as u32)
        };
        Nanos(if self.negative { -magnitude } else { magnitude })
    }
}

/// The value apimachinery's `resource.ParseQuantity` gives a quantity; `None` for what it
/// refuses.
pub fn parse(input: &str) -> Option<Nanos> {
    read(input).map(|exact| exact.nanos())
}

/// What the API server stores for a quantity in a core ResourceList (LimitRange and
/// ResourceQuota maps): rounded up to a whole milli-unit (core/v1 SetDefaults_ResourceList),
/// as its canonical spelling reads back.
fn stored(input: &str) -> Option<Exact> {
    read(input).map(|exact| exact.rounded_up_to(-3).spelled_back())
}

/// The value the API server stores for a quantity in a core ResourceList.
pub fn stored_value(s: &str) -> Option<Nanos> {
    stored(s).map(|exact| exact.nanos())
}

/// The value the API server stores, in whole milli-units (the unit of the shared-quota
/// allocator).
pub fn milli(s: &str) -> Option<i128> {
    stored_value(s).map(|Nanos(n)| n / MILLI_IN_NANOS)
}

const MILLI_IN_NANOS: i128 = 1_000_000;

/// A quantity of `milli` milli-units, in whole units when exact (`2`, `1500m`).
pub fn format_milli(milli: i128) -> String {
    if milli % 1000 == 0 {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

/// True when the API server stores both as the same value (or both are the same unparsable text).
pub fn same(a: &str, b: &str) -> bool {
    match (stored(a), stored(b)) {
        (Some(a), Some(b)) => {
            (a.negative, a.digits, a.exponent) == (b.negative, b.digits, b.exponent)
        }
        _ => a == b,
    }
}

/// A spelling-independent form of a ResourceList quantity (exact, whatever its size), for
/// normalising objects before comparing them: equal forms for what the API server stores alike.
pub fn canonical(s: &str) -> String {
    match stored(s) {
        Some(exact) if exact.digits.is_empty() => "0".to_owned(),
        Some(exact) => format!(
            "{}{}e{}",
            if exact.negative { "-" } else { "" },
            exact.digits,
            exact.exponent
        ),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_the_same_value_are_equal() {
        for (a, b) in [
            ("1", "1000m"),
            ("1Gi", "1024Mi"),
            ("0.5", "500m"),
            ("1.5Gi", "1536Mi"),
            ("1k", "1000"),
            ("1e3", "1k"),
            ("2E-3", "2m"),
            ("+4", "4"),
            ("0", "0Gi"),
            ("100n", "0.1u"),
            (".5", "500m"),
            // Finer than milli is rounded up, as the API server stores it.
            ("1127.234m", "1128m"),
            ("5n", "1m"),
            ("1.0005", "1001m"),
            ("12e-10", "1e-3"),
        ] {
            assert!(same(a, b), "{a} should equal {b}");
        }
    }

    #[test]
    fn different_values_differ() {
        for (a, b) in [
            ("1", "1001m"),
            ("1Gi", "1G"),
            ("1Ki", "1k"),
            ("-1", "1"),
            ("200Mi", "201Mi"),
        ] {
            assert!(!same(a, b), "{a} should differ from {b}");
        }
    }

    #[test]
    fn finer_than_nano_rounds_up_and_binary_values_are_capped_as_the_api_server_caps_them() {
        assert_eq!(parse("0.1n"), Some(Nanos(1)));
        assert_eq!(parse("1e-100"), Some(Nanos(1)));
        assert_eq!(parse("-0.1n"), Some(Nanos(-1)));
        let max = Nanos(9_223_372_036_854_775_807 * 1_000_000_000);
        assert_eq!(MAX_BINARY, max);
        // 2^63 units, one past the largest int64, and beyond, written with binary suffixes.
        for big in ["8Ei", "99999999999999999999999999999999Ki"] {
            assert_eq!(parse(big), Some(max), "{big}");
            assert!(same(big, "9223372036854775807"), "{big}");
        }
        assert_eq!(parse("-8Ei"), Some(Nanos(-max.0)));
        assert_eq!(parse("7Ei"), Some(Nanos(7 * (1i128 << 60) * 1_000_000_000)));
        // Decimal ones are kept whole.
        assert_eq!(
            parse("9223372036854775808"),
            Some(Nanos(9_223_372_036_854_775_808 * 1_000_000_000))
        );
        assert!(!same("9223372036854775808", "9223372036854775807"));
        assert!(same("1e100", "10e99"));
        assert!(!same("1e100", "1e99"));
    }

    #[test]
    fn what_the_api_server_spells_back_is_what_compares() {
        // Past E there is no SI suffix: the API server stores 10^21 written out as `1`.
        assert!(same("1000000000000000000000", "1"));
        assert!(same("10000000000000000000000", "10"));
        assert!(same("1000E", "1"));
        // Written with an exponent it keeps it.
        assert!(same("1e21", "1e21"));
        assert!(!same("1e21", "1"));
        assert!(same("10000000000000000000", "10E"));
        assert!(same("123456789012345678901", "123456789012345678901"));
        assert_eq!(canonical("1000000000000000000000"), canonical("1"));
        assert_eq!(canonical(&canonical("1.5Gi")), canonical("1536Mi"));
    }

    #[test]
    fn any_number_of_digits_reads_as_its_value_rounded_up_to_a_nano_unit() {
        // 31 digits: the API server keeps 1.000000001 (and a core ResourceList 1001m).
        assert_eq!(
            parse("1.000000000000000000000000000001"),
            Some(Nanos(1_000_000_001))
        );
        assert_eq!(milli("1.000000000000000000000000000001"), Some(1001));
        assert_eq!(
            parse("1.000000000000000000000000000000"),
            Some(Nanos(NANOS_IN_ONE))
        );
        assert_eq!(parse("0.5Gi"), Some(Nanos((1i128 << 29) * NANOS_IN_ONE)));
        assert_eq!(parse("1.5Ki"), Some(Nanos(1536 * NANOS_IN_ONE)));
        assert_eq!(parse("0.0000000001Ki"), Some(Nanos(103)));
        assert_eq!(parse("1e+3"), Some(Nanos(1000 * NANOS_IN_ONE)));
        assert_eq!(parse("5."), Some(Nanos(5 * NANOS_IN_ONE)));
        // No digit at all reads as zero, as apimachinery reads it.
        for zero in ["00", "0.0", "0Gi", ".", "0.", "+", "Mi", "-.0", "e3"] {
            assert_eq!(parse(zero), Some(Nanos(0)), "{zero}");
        }
    }

    #[test]
    fn milli_units_round_up_as_stored_and_print_back() {
        assert_eq!(milli("1"), Some(1000));
        assert_eq!(milli("1500m"), Some(1500));
        assert_eq!(milli("5n"), Some(1));
        assert_eq!(milli("1Ki"), Some(1_024_000));
        assert_eq!(milli("lots"), None);
        assert_eq!(format_milli(2000), "2");
        assert_eq!(format_milli(1500), "1500m");
        assert_eq!(format_milli(0), "0");
        for text in ["3", "250m", "80Gi", "1k"] {
            assert!(same(&format_milli(milli(text).unwrap()), text), "{text}");
        }
    }

    #[test]
    fn malformed_quantities_do_not_parse() {
        for bad in [
            "",
            "abc",
            "1.2.3",
            "3 cores",
            "1Gb",
            "--1",
            "1e",
            "1e1.5",
            " 1",
            "1 ",
            "1K",
            "1mi",
            "1Ee3",
            "1KiB",
            "1e99999999999999999999",
            "1..2",
            "1.5.",
            "1e+",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
