//! Topic and pattern parsing and matching: parse is total, a parsed value
//! round-trips, and matching agrees with the segment grammar.
#![no_main]

use aion_webhooks::domain::{Topic, TopicPattern};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (left, right) = text.split_once('\n').unwrap_or((&text, ""));
    let topic = Topic::parse(left);
    let pattern = TopicPattern::parse(right);
    if let Ok(t) = &topic {
        assert_eq!(
            Topic::parse(t.as_str()).as_ref().map(Topic::as_str),
            Ok(t.as_str())
        );
        // A topic is a pattern that matches exactly itself.
        let itself = TopicPattern::parse(t.as_str()).expect("a topic is a pattern");
        assert!(itself.matches(t));
    }
    if let (Ok(t), Ok(p)) = (&topic, &pattern) {
        let m = p.matches(t);
        if p.as_str() == "**" {
            assert!(m);
        }
        if p.is_literal() {
            assert_eq!(m, p.as_str() == t.as_str());
        }
    }
});
