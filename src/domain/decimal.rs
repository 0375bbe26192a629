//! The exact decimal value of a JSON number, and its order: `1.50` = `1.5`
//! = `15e-1`, `-0` = `0`, `12345678901234567890` < `12345678901234567891`
//! — never through `f64`. Pure: no I/O.

use std::cmp::Ordering;

/// `[-] 0.d1d2d3… × 10^point`: `digits` without leading or trailing zeros
/// (empty for zero), `point` where the decimal point sits before them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal {
    negative: bool,
    digits: String,
    point: i128,
}

impl Decimal {
    /// The value of `n`, which must match the JSON number grammar; `None`
    /// if it does not, or its exponent does not fit an `i128`.
    pub fn parse(n: &str) -> Option<Self> {
        let (negative, rest) = match n.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, n),
        };
        let (mantissa, exponent) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let mut exp: i128 = 0;
        if let Some(exponent) = exponent {
            if exponent.is_empty() {
                return None;
            }
            let (sign, digits) = match exponent.as_bytes()[0] {
                b'-' => (-1, &exponent[1..]),
                b'+' => (1, &exponent[1..]),
                _ => (1, exponent),
            };
            if digits.is_empty() || !digits.bytes().all(|d| d.is_ascii_digit()) {
                return None;
            }
            for d in digits.bytes() {
                exp = exp
                    .checked_mul(10)?
                    .checked_add(sign * i128::from(d - b'0'))?;
            }
        }
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|d| d.is_ascii_digit()) {
            return None;
        }
        // 0.(int frac) × 10^(len(int) + exp), then leading zeros moved into
        // the point.
        let all = format!("{int}{frac}");
        let lead = all.len() - all.trim_start_matches('0').len();
        let digits = all.trim_matches('0').to_owned();
        if digits.is_empty() {
            return Some(Self {
                negative: false,
                digits,
                point: 0,
            });
        }
        let point = i128::try_from(int.len())
            .ok()?
            .checked_add(exp)?
            .checked_sub(i128::try_from(lead).ok()?)?;
        Some(Self {
            negative,
            digits,
            point,
        })
    }

    /// `[-]digits e exponent` with the exponent of the last digit: one
    /// spelling per value (`0` for zero).
    pub fn canonical(&self) -> String {
        if self.digits.is_empty() {
            return "0".into();
        }
        let sign = if self.negative { "-" } else { "" };
        let exp = self.point - self.digits.len() as i128;
        format!("{sign}{}e{exp}", self.digits)
    }

    fn cmp_magnitude(&self, other: &Self) -> Ordering {
        match (self.digits.is_empty(), other.digits.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            (false, false) => {}
        }
        // Both start with a non-zero digit right after the point: the
        // point decides, then the digits as text (a shorter prefix is less).
        self.point
            .cmp(&other.point)
            .then_with(|| self.digits.as_str().cmp(other.digits.as_str()))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
        }
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: &str) -> Decimal {
        Decimal::parse(n).unwrap_or_else(|| panic!("{n}"))
    }

    #[test]
    fn equal_values_have_one_spelling() {
        for (a, b) in [
            ("1.50", "1.5"),
            ("1.5", "15e-1"),
            ("-0", "0"),
            ("0.000", "0e10"),
            ("100", "1e2"),
            ("1", "1.0"),
            ("0.0012", "1.2E-3"),
        ] {
            assert_eq!(d(a), d(b), "{a} = {b}");
            assert_eq!(d(a).canonical(), d(b).canonical());
        }
        assert_eq!(d("1.50").canonical(), "15e-1");
        assert_eq!(d("-1200").canonical(), "-12e2");
    }

    #[test]
    fn order_is_exact() {
        let ascending = [
            "-1e400",
            "-1000.5",
            "-1000",
            "-0.001",
            "0",
            "1e-400",
            "0.1",
            "0.99999999999999999999",
            "1",
            "12345678901234567890",
            "12345678901234567891",
            "1e20",
            "1e400",
        ];
        for pair in ascending.windows(2) {
            assert!(d(pair[0]) < d(pair[1]), "{} < {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn agrees_with_f64_where_f64_is_exact() {
        let values = [-3.25, -1.0, -0.5, 0.0, 0.125, 1.0, 2.5, 1000.0, 1e10];
        for a in values {
            for b in values {
                assert_eq!(
                    d(&a.to_string()).cmp(&d(&b.to_string())),
                    a.partial_cmp(&b).unwrap(),
                    "{a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn not_numbers_are_refused() {
        for n in ["", "-", "1e", "e5", "abc", "1.2.3", "0x10"] {
            assert!(Decimal::parse(n).is_none(), "{n:?}");
        }
    }
}
