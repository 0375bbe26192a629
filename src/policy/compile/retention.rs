//! Compiling `retention:` (contract §1): durations, defaults 7 d / 30 d.

use super::super::model::RetentionPolicy;
use super::super::raw::RawRetention;
use super::Compiler;

impl Compiler<'_> {
    pub fn retention(&mut self, raw: &Option<RawRetention>) -> RetentionPolicy {
        let mut out = RetentionPolicy::default();
        let Some(raw) = raw else { return out };
        if let Some(s) = &raw.succeeded
            && let Some(d) = self.duration(s, "retention.succeeded", false)
        {
            out.succeeded = d;
        }
        if let Some(s) = &raw.dead
            && let Some(d) = self.duration(s, "retention.dead", false)
        {
            out.dead = d;
        }
        out
    }
}
