//! A webhook's delivery controls: `max_in_flight`, `initial_in_flight`,
//! `disable_after` and `rate_limit`.

use std::time::Duration;

use serde_saphyr::Spanned;

use super::Compiler;
use crate::policy::raw::Str;

/// `N/s` or `N/m` (N a positive integer, at most 100,000 a second) as
/// attempts per second.
fn parse_rate(text: &str) -> Result<f64, String> {
    let bad = || format!("invalid rate {text:?}; expected e.g. `50/s` or `300/m`");
    let (n, unit) = text.trim().split_once('/').ok_or_else(bad)?;
    let n: u32 = n.trim().parse().map_err(|_| bad())?;
    let per_second = match unit.trim() {
        "s" => f64::from(n),
        "m" => f64::from(n) / 60.0,
        _ => return Err(bad()),
    };
    if n == 0 || per_second > 100_000.0 {
        return Err(format!(
            "rate {text:?} must be above zero and at most 100000/s"
        ));
    }
    Ok(per_second)
}

impl Compiler<'_> {
    /// `rate_limit`: attempts per second.
    pub(super) fn rate_limit(&mut self, raw: &Option<Str>, path: &str) -> Option<f64> {
        let r = raw.as_ref()?;
        let text = self.string(r, path)?;
        match parse_rate(&text) {
            Ok(per_second) => Some(per_second),
            Err(msg) => {
                self.error(path.to_owned(), r.referenced, msg);
                None
            }
        }
    }

    /// `max_in_flight` / `initial_in_flight`: sends at once, 1 to 10,000.
    pub(super) fn in_flight(&mut self, n: &Option<Spanned<i64>>, path: &str) -> Option<u32> {
        let n = n.as_ref()?;
        match u32::try_from(n.value) {
            Ok(v) if (1..=10_000).contains(&v) => Some(v),
            _ => {
                let msg = format!("must be between 1 and 10000, got {}", n.value);
                self.error(path.to_owned(), n.referenced, msg);
                None
            }
        }
    }

    /// `disable_after`: a duration, or `never`.
    pub(super) fn disable_after(
        &mut self,
        base: Option<Duration>,
        raw: &Option<Str>,
        path: &str,
    ) -> Option<Duration> {
        let Some(s) = raw else { return base };
        if s.value.trim() == "never" {
            return None;
        }
        self.duration(s, path, false).or(base)
    }
}
