//! Topics and topic patterns: the names events are published under and the
//! subscriptions that select them (contract §1, "Topics and patterns").
//!
//! Both are parsed once, at the edge, so a [`Topic`] or [`TopicPattern`] that
//! exists is valid. This module owns the grammar and the reference matcher
//! [`TopicPattern::matches`]; routing against a whole policy goes through
//! `policy::router`, which must agree with it. Pure: no I/O.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a valid topic or pattern. Messages are shown to admins
/// as is (`policy check`), so they say what to change. Segment indexes are
/// 1-based, as a person counts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("must not be empty; use 1 to 16 segments joined by '.'")]
    Empty,
    #[error("is {len} bytes long; at most 255 are allowed")]
    TooLong { len: usize },
    #[error("has {count} segments; at most 16 are allowed")]
    TooManySegments { count: usize },
    #[error("segment {index} is empty; look for a leading, trailing or doubled '.'")]
    EmptySegment { index: usize },
    #[error(
        "segment {index} ({segment:?}) contains {ch:?}; a segment may only use letters, digits, '_' and '-'"
    )]
    InvalidChar {
        index: usize,
        segment: String,
        ch: char,
    },
    #[error(
        "segment {index} ({segment:?}) is a wildcard; wildcards belong in subscription patterns, not in event topics"
    )]
    WildcardInTopic { index: usize, segment: String },
    #[error("{}", bad_wildcard_message(*.index, .segment))]
    BadWildcard { index: usize, segment: String },
}

fn bad_wildcard_message(index: usize, segment: &str) -> String {
    let problem = if segment.chars().all(|c| c == '*') {
        "has too many `*`"
    } else {
        "mixes `*` with other characters"
    };
    format!("segment {index} ({segment:?}) {problem}; use `*` or `**` alone")
}

/// One segment of a [`TopicPattern`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatternSegment<'a> {
    /// Matches exactly this topic segment.
    Literal(&'a str),
    /// `*`: exactly one segment, whatever it is.
    Star,
    /// `**`: zero or more segments.
    DoubleStar,
}

fn is_segment_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Checks the grammar shared by topics and patterns; `wildcards` says whether
/// `*` and `**` segments are allowed.
fn check(s: &str, wildcards: bool) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > Topic::MAX_LEN {
        return Err(TopicError::TooLong { len: s.len() });
    }
    let count = s.split('.').count();
    if count > Topic::MAX_SEGMENTS {
        return Err(TopicError::TooManySegments { count });
    }
    for (i, segment) in s.split('.').enumerate() {
        let index = i + 1;
        if segment.is_empty() {
            return Err(TopicError::EmptySegment { index });
        }
        if segment == "*" || segment == "**" {
            if wildcards {
                continue;
            }
            let segment = segment.to_owned();
            return Err(TopicError::WildcardInTopic { index, segment });
        }
        if wildcards && segment.contains('*') {
            let segment = segment.to_owned();
            return Err(TopicError::BadWildcard { index, segment });
        }
        if let Some(ch) = segment.chars().find(|&c| !is_segment_char(c)) {
            let segment = segment.to_owned();
            return Err(TopicError::InvalidChar { index, segment, ch });
        }
    }
    Ok(())
}

/// The name an event is published under, e.g. `kernel.proposal.created`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Topic(Box<str>);

impl Topic {
    /// Longest topic or pattern, in bytes.
    pub const MAX_LEN: usize = 255;
    /// Most segments in a topic or pattern.
    pub const MAX_SEGMENTS: usize = 16;

    pub fn parse(s: &str) -> Result<Self, TopicError> {
        check(s, false)?;
        Ok(Self(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The segments, in order; never empty.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }
}

/// A subscription: a topic whose segments may also be `*` (exactly one
/// segment) or `**` (zero or more), e.g. `kernel.proposal.*` or `aion.**`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPattern(Box<str>);

impl TopicPattern {
    pub fn parse(s: &str) -> Result<Self, TopicError> {
        check(s, true)?;
        Ok(Self(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The segments, in order; never empty.
    pub fn segments(&self) -> impl Iterator<Item = PatternSegment<'_>> {
        self.0.split('.').map(|s| match s {
            "*" => PatternSegment::Star,
            "**" => PatternSegment::DoubleStar,
            literal => PatternSegment::Literal(literal),
        })
    }

    /// True when the pattern has no wildcard, so it matches one topic only.
    pub fn is_literal(&self) -> bool {
        self.segments()
            .all(|s| matches!(s, PatternSegment::Literal(_)))
    }

    /// Whether `topic` matches. The reference implementation: fine for one
    /// pattern; to route against many, build a `policy::router::Router`.
    pub fn matches(&self, topic: &Topic) -> bool {
        // Both sides have at most 16 segments, so this is the textbook glob
        // table on the stack: no allocation, no backtracking, however many
        // `**` an admin writes.
        let mut words = [""; Topic::MAX_SEGMENTS];
        let mut n = 0;
        for (slot, word) in words.iter_mut().zip(topic.segments()) {
            *slot = word;
            n += 1;
        }
        // reach[j]: the pattern segments seen so far match exactly the first
        // j topic segments.
        let mut reach = [false; Topic::MAX_SEGMENTS + 1];
        reach[0] = true;
        for segment in self.segments() {
            let mut next = [false; Topic::MAX_SEGMENTS + 1];
            for j in 0..=n {
                next[j] = match segment {
                    PatternSegment::Literal(lit) => j > 0 && reach[j - 1] && words[j - 1] == lit,
                    PatternSegment::Star => j > 0 && reach[j - 1],
                    // Zero more segments, or one more than at j - 1.
                    PatternSegment::DoubleStar => reach[j] || (j > 0 && next[j - 1]),
                };
            }
            reach = next;
        }
        reach[n]
    }
}

impl TopicPattern {
    /// Whether every topic `other` matches is also matched by `self` (so a
    /// first-match list with `self` earlier never reaches `other`).
    pub fn covers(&self, other: &TopicPattern) -> bool {
        let a: Vec<PatternSegment<'_>> = self.segments().collect();
        let b: Vec<PatternSegment<'_>> = other.segments().collect();
        // cover[i][j]: a[i..] covers b[j..]. At most 16 × 16 entries.
        let mut cover = vec![vec![false; b.len() + 1]; a.len() + 1];
        cover[a.len()][b.len()] = true;
        for i in (0..a.len()).rev() {
            for j in (0..=b.len()).rev() {
                cover[i][j] = match a[i] {
                    // `**` takes none of b, or one more of b's segments
                    // (any kind, `**` included).
                    PatternSegment::DoubleStar => {
                        cover[i + 1][j] || (j < b.len() && cover[i][j + 1])
                    }
                    // `*` takes exactly one segment: a literal or a `*`.
                    PatternSegment::Star => {
                        j < b.len()
                            && !matches!(b[j], PatternSegment::DoubleStar)
                            && cover[i + 1][j + 1]
                    }
                    PatternSegment::Literal(lit) => {
                        j < b.len() && b[j] == PatternSegment::Literal(lit) && cover[i + 1][j + 1]
                    }
                };
            }
        }
        cover[0][0]
    }
}

impl From<Topic> for TopicPattern {
    /// Every topic is a literal pattern matching only itself.
    fn from(topic: Topic) -> Self {
        Self(topic.0)
    }
}

/// `Display`, `FromStr`, `AsRef<str>`, `TryFrom<String>` (keeps the
/// allocation) and serde as a plain string, parsed on the way in.
macro_rules! string_newtype {
    ($ty:ident, $wildcards:expr) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $ty {
            type Err = TopicError;
            fn from_str(s: &str) -> Result<Self, TopicError> {
                Self::parse(s)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $ty {
            type Error = TopicError;
            fn try_from(s: String) -> Result<Self, TopicError> {
                check(&s, $wildcards)?;
                Ok(Self(s.into_boxed_str()))
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = String::deserialize(deserializer)?;
                Self::try_from(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_newtype!(Topic, false);
string_newtype!(TopicPattern, true);

#[cfg(test)]
mod covers_tests {
    use super::*;

    fn p(s: &str) -> TopicPattern {
        TopicPattern::parse(s).expect(s)
    }

    #[test]
    fn covers_follows_the_matching_rules() {
        for (a, b) in [
            ("aion.**", "aion.router.decisions"),
            ("aion.**", "aion.*.x"),
            ("aion.**", "aion.**"),
            ("**", "a.**.b"),
            ("a.*", "a.b"),
            ("a.*", "a.*"),
            ("a.**.c", "a.b.c"),
            ("a.b", "a.b"),
        ] {
            assert!(p(a).covers(&p(b)), "{a} covers {b}");
        }
        for (a, b) in [
            ("a.*", "a.**"),
            ("a.*", "*.b"),
            ("a.b", "a.*"),
            ("aion.router.decisions", "aion.**"),
            ("a.*.c", "a.**.c"),
            ("a.b.*", "a.b"),
        ] {
            assert!(!p(a).covers(&p(b)), "{a} does not cover {b}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn topic(s: &str) -> Topic {
        Topic::parse(s).unwrap()
    }

    fn matches(pattern: &str, t: &str) -> bool {
        TopicPattern::parse(pattern).unwrap().matches(&topic(t))
    }

    #[test]
    fn star_matches_exactly_one_segment() {
        assert!(matches("kernel.proposal.*", "kernel.proposal.created"));
        assert!(!matches("kernel.proposal.*", "kernel.proposal"));
        assert!(!matches("kernel.proposal.*", "kernel.proposal.a.b"));
        assert!(matches("*.b", "a.b"));
        assert!(!matches("*", "a.b"));
    }

    #[test]
    fn double_star_matches_zero_or_more_segments() {
        for t in ["aion", "aion.x", "aion.x.y"] {
            assert!(matches("aion.**", t), "{t}");
        }
        assert!(!matches("aion.**", "aionx"));
        assert!(!matches("aion.**", "kernel.aion"));
        for t in ["a", "a.b.c", "x.y.z.w"] {
            assert!(matches("**", t), "{t}");
        }
        for t in ["a.b", "a.x.b", "a.x.y.b"] {
            assert!(matches("a.**.b", t), "{t}");
        }
        assert!(!matches("a.**.b", "a.b.c"));
        assert!(matches("a.**.**.b", "a.b"));
        assert!(matches("**.*", "a"));
        assert!(!matches("**.*.*", "a"));
    }

    #[test]
    fn literal_pattern_matches_only_itself() {
        assert!(matches("aion.router.decisions", "aion.router.decisions"));
        assert!(!matches("aion.router.decisions", "aion.router"));
        assert!(TopicPattern::parse("a.b").unwrap().is_literal());
        assert!(!TopicPattern::parse("a.*").unwrap().is_literal());
        assert!(TopicPattern::from(topic("a.b")).matches(&topic("a.b")));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = |s: &str| TopicPattern::parse(s).unwrap_err().to_string();
        assert_eq!(
            e("x.y.a*b"),
            "segment 3 (\"a*b\") mixes `*` with other characters; use `*` or `**` alone"
        );
        assert_eq!(
            e("a.***"),
            "segment 2 (\"***\") has too many `*`; use `*` or `**` alone"
        );
        assert_eq!(Topic::parse(""), Err(TopicError::Empty));
        assert_eq!(
            Topic::parse("a..b"),
            Err(TopicError::EmptySegment { index: 2 })
        );
        assert_eq!(
            Topic::parse(".a"),
            Err(TopicError::EmptySegment { index: 1 })
        );
        assert_eq!(
            Topic::parse("a.b c").unwrap_err().to_string(),
            "segment 2 (\"b c\") contains ' '; a segment may only use letters, digits, '_' and '-'"
        );
        assert!(matches!(
            Topic::parse("kernel.*"),
            Err(TopicError::WildcardInTopic { index: 2, .. })
        ));
        assert!(matches!(
            Topic::parse("a*"),
            Err(TopicError::InvalidChar { ch: '*', .. })
        ));
        let long = "a".repeat(256);
        assert_eq!(Topic::parse(&long), Err(TopicError::TooLong { len: 256 }));
        assert!(Topic::parse(&"a".repeat(255)).is_ok());
        let many = vec!["a"; 17].join(".");
        assert_eq!(
            Topic::parse(&many),
            Err(TopicError::TooManySegments { count: 17 })
        );
        assert!(Topic::parse(&vec!["a"; 16].join(".")).is_ok());
    }

    #[test]
    fn serde_is_a_plain_string_and_parses_on_the_way_in() {
        let t = topic("aion.router.decisions");
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"aion.router.decisions\""
        );
        let p: TopicPattern = serde_json::from_str("\"kernel.proposal.*\"").unwrap();
        assert_eq!(p.as_str(), "kernel.proposal.*");
        let err = serde_json::from_str::<Topic>("\"kernel.*\"").unwrap_err();
        assert!(err.to_string().contains("is a wildcard"), "{err}");
    }

    /// The obvious recursive definition, exponential in `**` but fine for the
    /// short inputs below; `matches` must agree with it.
    fn by_definition(p: &[PatternSegment<'_>], t: &[&str]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some((PatternSegment::DoubleStar, rest)) => {
                (0..=t.len()).any(|k| by_definition(rest, &t[k..]))
            }
            Some((PatternSegment::Star, rest)) => !t.is_empty() && by_definition(rest, &t[1..]),
            Some((PatternSegment::Literal(l), rest)) => {
                t.first() == Some(l) && by_definition(rest, &t[1..])
            }
        }
    }

    const LITERAL: &str = "[A-Za-z0-9_-]{1,8}";

    fn pattern_segment() -> impl Strategy<Value = String> {
        prop_oneof![LITERAL, Just("*".to_owned()), Just("**".to_owned())]
    }

    /// A segment with a character outside the grammar (never a lone `*`:
    /// the suffix is not empty).
    fn bad_segment() -> impl Strategy<Value = String> {
        let bad = prop::sample::select(vec![' ', '#', '/', 'é', '+', '\t', ':', '*']);
        ("[a-z]{0,3}", bad, "[a-z]{1,3}").prop_map(|(pre, ch, post)| format!("{pre}{ch}{post}"))
    }

    proptest! {
        #[test]
        fn topic_round_trips(segs in prop::collection::vec(LITERAL, 1..=16)) {
            let s = segs.join(".");
            let t = Topic::parse(&s).unwrap();
            prop_assert_eq!(t.as_str(), s.as_str());
            prop_assert_eq!(t.to_string(), s.clone());
            prop_assert_eq!(t.segments().collect::<Vec<_>>(), segs.iter().map(String::as_str).collect::<Vec<_>>());
            prop_assert_eq!(Topic::try_from(s.clone()).unwrap(), t.clone());
            prop_assert!(TopicPattern::parse(&s).unwrap().matches(&t));
        }

        #[test]
        fn pattern_round_trips(segs in prop::collection::vec(pattern_segment(), 1..=16)) {
            let s = segs.join(".");
            let p = TopicPattern::parse(&s).unwrap();
            prop_assert_eq!(p.as_str(), s.as_str());
            prop_assert_eq!(p.is_literal(), !s.contains('*'));
            prop_assert_eq!(Topic::parse(&s).is_ok(), p.is_literal());
        }

        #[test]
        fn invalid_segments_are_refused(
            before in prop::collection::vec(LITERAL, 0..3),
            bad in bad_segment(),
            after in prop::collection::vec(LITERAL, 0..3),
        ) {
            let index = before.len() + 1;
            let s = [before, vec![bad], after].concat().join(".");
            let segment_error = |e: TopicError| match e {
                TopicError::InvalidChar { index: i, .. } | TopicError::BadWildcard { index: i, .. } => i,
                other => panic!("unexpected {other:?}"),
            };
            prop_assert_eq!(segment_error(Topic::parse(&s).unwrap_err()), index);
            prop_assert_eq!(segment_error(TopicPattern::parse(&s).unwrap_err()), index);
        }

        #[test]
        fn matches_agrees_with_the_definition(
            p in prop::collection::vec(prop_oneof![Just("a"), Just("b"), Just("*"), Just("**")], 1..=6),
            t in prop::collection::vec(prop_oneof![Just("a"), Just("b")], 1..=6),
        ) {
            let pattern = TopicPattern::parse(&p.join(".")).unwrap();
            let segs: Vec<_> = pattern.segments().collect();
            prop_assert_eq!(pattern.matches(&topic(&t.join("."))), by_definition(&segs, &t));
        }
    }
}
