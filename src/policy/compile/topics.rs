//! A webhook's `topics:`: valid patterns, at least one, none twice.

use serde_saphyr::Spanned;

use super::Compiler;
use crate::domain::TopicPattern;
use crate::policy::raw::Str;

impl Compiler<'_> {
    pub(super) fn patterns(&mut self, list: &Spanned<Vec<Str>>, path: &str) -> Vec<TopicPattern> {
        if list.value.is_empty() {
            self.error(
                path,
                list.referenced,
                "must list at least one topic pattern",
            );
        }
        let mut out: Vec<TopicPattern> = Vec::new();
        for (i, s) in list.value.iter().enumerate() {
            let p = format!("{path}[{i}]");
            let Some(text) = self.string(s, &p) else {
                continue;
            };
            match TopicPattern::parse(&text) {
                Ok(pat) if out.contains(&pat) => {
                    self.error(p, s.referenced, format!("pattern {text:?} is listed twice"))
                }
                Ok(pat) => out.push(pat),
                Err(e) => self.error(
                    p,
                    s.referenced,
                    format!("invalid topic pattern {text:?}: {e}"),
                ),
            }
        }
        out
    }
}
