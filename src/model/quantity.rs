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

/// A quantity as a whole number of nano-units (10^-9), wide enough for every value Kubernetes
/// accepts (at most 2^63-1 units).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nanos(pub i128);

/// Parses `<sign><number><suffix>` as Kubernetes does: binary suffixes Ki..Ei, decimal suffixes
/// n, u, m, "", k, M, G, T, P, E, or a decimal exponent (`e3`, `E-2`). Precision finer than one
/// nano-unit rounds up, as Kubernetes rounds up.
pub fn parse(input: &str) -> Option<Nanos> {
    let s = input.trim();
    let (negative, s) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return None;
    }
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));

    // value = digits * 10^(exp10) * 2^(exp2), with digits the number without its decimal point.
    let mut exp10: i32 = -(fraction.len() as i32);
    let mut exp2: u32 = 0;
    match suffix {
        "" => {}
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        "Ki" => exp2 = 10,
        "Mi" => exp2 = 20,
        "Gi" => exp2 = 30,
        "Ti" => exp2 = 40,
        "Pi" => exp2 = 50,
        "Ei" => exp2 = 60,
        other => {
            let exponent = other.strip_prefix(['e', 'E'])?;
            let exponent: i32 = exponent.parse().ok()?;
            if exponent.abs() > 40 {
                return None;
            }
            exp10 += exponent;
        }
    }

    let digits = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return None;
    }
    let mut value: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    value = value.checked_mul(1i128 << exp2)?;
    // Scale to nano-units: multiply by 10^(exp10 + 9), rounding up any remainder.
    let scale = exp10 + 9;
    if scale >= 0 {
        value = value.checked_mul(10i128.checked_pow(scale as u32)?)?;
    } else {
        let divisor = 10i128.checked_pow((-scale) as u32)?;
        value = value / divisor + i128::from(value % divisor != 0);
    }
    Some(Nanos(if negative { -value } else { value }))
}

const MILLI_IN_NANOS: i128 = 1_000_000;

/// The value the API server stores for a quantity in a core ResourceList: rounded up (away from
/// zero) to a whole milli-unit.
pub fn stored_value(s: &str) -> Option<Nanos> {
    let Nanos(n) = parse(s)?;
    let rem = n % MILLI_IN_NANOS;
    Some(Nanos(if rem == 0 {
        n
    } else {
        n - rem + MILLI_IN_NANOS * n.signum()
    }))
}

/// The value the API server stores, in whole milli-units (the unit of the shared-quota
/// allocator).
pub fn milli(s: &str) -> Option<i128> {
    stored_value(s).map(|Nanos(n)| n / MILLI_IN_NANOS)
}

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
    match (stored_value(a), stored_value(b)) {
        (Some(a), Some(b)) => a == b,
        _ => a == b,
    }
}

/// A spelling-independent form of a ResourceList quantity, for normalising objects before
/// comparing them.
pub fn canonical(s: &str) -> String {
    match stored_value(s) {
        Some(Nanos(n)) => format!("{n}n"),
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
    fn finer_than_nano_rounds_up_and_big_values_fit() {
        assert_eq!(parse("0.1n"), Some(Nanos(1)));
        assert_eq!(parse("8Ei"), Some(Nanos(8 * (1i128 << 60) * 1_000_000_000)));
        assert_eq!(
            parse("9223372036854775807"),
            Some(Nanos(9_223_372_036_854_775_807 * 1_000_000_000))
        );
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
        for bad in ["", "abc", "1.2.3", "3 cores", "1Gb", "--1", ".", "1e", "Mi"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
