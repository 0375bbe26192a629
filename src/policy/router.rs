//! An index over every subscription pattern of a policy, so routing one topic
//! costs about the topic's length, not the number of patterns.
//!
//! The index is a trie over pattern segments: each node has its literal
//! children, at most one `*` child and one `**` child, and the values of the
//! patterns ending there. Routing walks the topic's segments with the set of
//! nodes reachable so far (an NFA over the trie, deduplicated each step), so
//! the work is bounded by segments × distinct active nodes whatever the mix
//! of `**`. It must agree with [`TopicPattern::matches`] — a property test
//! holds the two together. Values are opaque: this module knows nothing of
//! webhooks, tenants or `enabled`. Built once per policy, then read-only and
//! shared between threads.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::domain::topic::{PatternSegment, Topic, TopicPattern};

type NodeId = u32;
const ROOT: NodeId = 0;

/// Active nodes kept on the stack before `route` spills to the heap. Real
/// policies keep a handful active (root, the topic's literal path, a few
/// wildcards); 32 leaves room for wildcard-heavy ones.
const INLINE_STATES: usize = 32;

/// Collects `(pattern, value)` pairs; [`RouterBuilder::build`] freezes them.
pub struct RouterBuilder<V> {
    nodes: Vec<BuildNode<V>>,
    patterns: usize,
}

struct BuildNode<V> {
    // Std `HashMap` (SipHash) on purpose: topic segments come from publishers.
    literals: HashMap<Box<str>, NodeId>,
    star: Option<NodeId>,
    double_star: Option<NodeId>,
    values: Vec<V>,
}

impl<V> BuildNode<V> {
    fn new() -> Self {
        Self {
            literals: HashMap::new(),
            star: None,
            double_star: None,
            values: Vec::new(),
        }
    }
}

impl<V> RouterBuilder<V> {
    pub fn new() -> Self {
        Self {
            nodes: vec![BuildNode::new()],
            patterns: 0,
        }
    }

    /// Adds `value` under `pattern`. Inserting the same pattern twice keeps
    /// both values; each is routed once per matching topic.
    pub fn insert(&mut self, pattern: &TopicPattern, value: V) {
        let mut at = ROOT;
        for segment in pattern.segments() {
            // The id the child gets if it does not exist yet.
            let fresh =
                NodeId::try_from(self.nodes.len()).expect("a router holds fewer than 2^32 nodes");
            let node = &mut self.nodes[at as usize];
            let child = match segment {
                PatternSegment::Literal(literal) => match node.literals.get(literal) {
                    Some(&child) => child,
                    None => *node.literals.entry(literal.into()).or_insert(fresh),
                },
                PatternSegment::Star => *node.star.get_or_insert(fresh),
                PatternSegment::DoubleStar => *node.double_star.get_or_insert(fresh),
            };
            if child == fresh {
                self.nodes.push(BuildNode::new());
            }
            at = child;
        }
        self.nodes[at as usize].values.push(value);
        self.patterns += 1;
    }

    /// Freezes the trie: values move into one flat array, maps shrink.
    pub fn build(self) -> Router<V> {
        // A node reached through a `**` edge loops on any segment.
        let mut self_loop = vec![false; self.nodes.len()];
        for node in &self.nodes {
            if let Some(child) = node.double_star {
                self_loop[child as usize] = true;
            }
        }
        let mut values = Vec::with_capacity(self.patterns);
        let nodes = self
            .nodes
            .into_iter()
            .zip(self_loop)
            .map(|(node, self_loop)| {
                let start = values.len();
                values.extend(node.values);
                let mut literals = node.literals;
                literals.shrink_to_fit();
                Node {
                    literals,
                    star: node.star,
                    double_star: node.double_star,
                    self_loop,
                    values: (start, values.len()),
                }
            })
            .collect();
        Router { nodes, values }
    }
}

impl<V> Default for RouterBuilder<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> fmt::Debug for RouterBuilder<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouterBuilder")
            .field("patterns", &self.patterns)
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

/// The frozen index. Cheap to share (`Send + Sync` when `V` is).
pub struct Router<V> {
    nodes: Vec<Node>,
    /// Every inserted value, grouped by the node its pattern ends at.
    values: Vec<V>,
}

struct Node {
    literals: HashMap<Box<str>, NodeId>,
    star: Option<NodeId>,
    double_star: Option<NodeId>,
    self_loop: bool,
    /// Range into `Router::values`.
    values: (usize, usize),
}

impl<V> Router<V> {
    /// Appends to `out` every value whose pattern matches `topic`, in no
    /// particular order. Each inserted `(pattern, value)` pair appears at
    /// most once, so a value inserted under two patterns that both match
    /// appears twice: the caller dedupes if it cares. Does not allocate
    /// beyond growing `out` unless more than 32 trie nodes are active at
    /// once.
    pub fn route<'a>(&'a self, topic: &Topic, out: &mut Vec<&'a V>) {
        let mut current = StateSet::new();
        let mut next = StateSet::new();
        self.enter(ROOT, &mut current);
        for segment in topic.segments() {
            next.clear();
            for &id in current.as_slice() {
                let node = &self.nodes[id as usize];
                if node.self_loop {
                    self.enter(id, &mut next);
                }
                if let Some(&child) = node.literals.get(segment) {
                    self.enter(child, &mut next);
                }
                if let Some(child) = node.star {
                    self.enter(child, &mut next);
                }
            }
            if next.is_empty() {
                return;
            }
            std::mem::swap(&mut current, &mut next);
        }
        for &id in current.as_slice() {
            let (start, end) = self.nodes[id as usize].values;
            out.extend(&self.values[start..end]);
        }
    }

    /// Adds `id` and, since `**` may match zero segments, its chain of `**`
    /// children (`a.**.**` has two).
    fn enter(&self, mut id: NodeId, set: &mut StateSet) {
        // Every insert goes through here, so a node already present has its
        // chain present too.
        while set.insert(id) {
            match self.nodes[id as usize].double_star {
                Some(child) => id = child,
                None => return,
            }
        }
    }

    /// Number of patterns inserted.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl<V> fmt::Debug for Router<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("patterns", &self.len())
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

/// The trie nodes active after a prefix of the topic, each once. On the stack
/// up to [`INLINE_STATES`]; past that a heap list with a hash set, so even a
/// pathological policy stays linear per step.
struct StateSet {
    inline: [NodeId; INLINE_STATES],
    len: usize,
    spilled: Vec<NodeId>,
    seen: HashSet<NodeId>,
}

impl StateSet {
    fn new() -> Self {
        Self {
            inline: [0; INLINE_STATES],
            len: 0,
            spilled: Vec::new(),
            seen: HashSet::new(),
        }
    }

    /// Returns false if `id` was already present.
    fn insert(&mut self, id: NodeId) -> bool {
        if !self.spilled.is_empty() {
            let fresh = self.seen.insert(id);
            if fresh {
                self.spilled.push(id);
            }
            return fresh;
        }
        if self.inline[..self.len].contains(&id) {
            return false;
        }
        if self.len < INLINE_STATES {
            self.inline[self.len] = id;
            self.len += 1;
        } else {
            self.spilled.extend_from_slice(&self.inline);
            self.spilled.push(id);
            self.seen.extend(&self.spilled);
        }
        true
    }

    fn as_slice(&self) -> &[NodeId] {
        if self.spilled.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.spilled
        }
    }

    fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    fn clear(&mut self) {
        self.len = 0;
        self.spilled.clear();
        self.seen.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn router(patterns: &[&str]) -> Router<usize> {
        let mut builder = RouterBuilder::new();
        for (i, p) in patterns.iter().enumerate() {
            builder.insert(&TopicPattern::parse(p).unwrap(), i);
        }
        builder.build()
    }

    fn routed(router: &Router<usize>, topic: &str) -> Vec<usize> {
        let mut out = Vec::new();
        router.route(&Topic::parse(topic).unwrap(), &mut out);
        let mut out: Vec<usize> = out.into_iter().copied().collect();
        out.sort_unstable();
        out
    }

    /// What the router must return: the reference matcher over every pattern.
    fn naive(patterns: &[String], topic: &str) -> Vec<usize> {
        let topic = Topic::parse(topic).unwrap();
        (0..patterns.len())
            .filter(|&i| TopicPattern::parse(&patterns[i]).unwrap().matches(&topic))
            .collect()
    }

    #[test]
    fn routes_the_contract_examples() {
        let r = router(&["kernel.proposal.*", "aion.**", "**", "a.**.b"]);
        assert_eq!(routed(&r, "kernel.proposal.created"), [0, 2]);
        assert_eq!(routed(&r, "kernel.proposal"), [2]);
        assert_eq!(routed(&r, "kernel.proposal.a.b"), [2]);
        for t in ["aion", "aion.x", "aion.x.y"] {
            assert_eq!(routed(&r, t), [1, 2], "{t}");
        }
        for t in ["a.b", "a.x.b", "a.x.y.b"] {
            assert_eq!(routed(&r, t), [2, 3], "{t}");
        }
        assert_eq!(routed(&r, "a.b.c"), [2]);
    }

    #[test]
    fn consecutive_and_trailing_double_stars_match_zero_segments() {
        let r = router(&["a.**.**", "a.**.**.b", "**.**", "a.*.**"]);
        assert_eq!(routed(&r, "a"), [0, 2]);
        assert_eq!(routed(&r, "a.b"), [0, 1, 2, 3]);
        assert_eq!(routed(&r, "x.y.z"), [2]);
    }

    #[test]
    fn a_value_under_two_matching_patterns_is_returned_twice() {
        let mut builder = RouterBuilder::new();
        for p in ["a.*", "a.b", "a.b"] {
            builder.insert(&TopicPattern::parse(p).unwrap(), "hook");
        }
        let r = builder.build();
        assert_eq!(r.len(), 3);
        let mut out = Vec::new();
        r.route(&Topic::parse("a.b").unwrap(), &mut out);
        assert_eq!(out, [&"hook"; 3]);
    }

    #[test]
    fn many_active_states_spill_to_the_heap_and_still_match() {
        // Every mix of `a` and `*` over 6 segments: 64 nodes active at the end.
        let patterns: Vec<String> = (0..64u32)
            .map(|bits| {
                (0..6)
                    .map(|i| if bits & (1 << i) == 0 { "a" } else { "*" })
                    .collect::<Vec<_>>()
                    .join(".")
            })
            .chain(["**.a".to_owned(), "a.**".to_owned()])
            .collect();
        let refs: Vec<&str> = patterns.iter().map(String::as_str).collect();
        let r = router(&refs);
        for topic in ["a.a.a.a.a.a", "a.b.a.b.a.b", "a.a.a.a.a", "b.a"] {
            assert_eq!(routed(&r, topic), naive(&patterns, topic), "{topic}");
        }
    }

    #[test]
    fn empty_router_routes_nothing() {
        let r: Router<u8> = RouterBuilder::new().build();
        assert!(r.is_empty());
        let mut out = Vec::new();
        r.route(&Topic::parse("a").unwrap(), &mut out);
        assert!(out.is_empty());
        assert_eq!(format!("{r:?}"), "Router { patterns: 0, nodes: 1 }");
    }

    fn pattern() -> impl Strategy<Value = String> {
        let segment = prop_oneof![Just("a"), Just("b"), Just("c"), Just("*"), Just("**")];
        prop::collection::vec(segment, 1..=5).prop_map(|s| s.join("."))
    }

    fn topic() -> impl Strategy<Value = String> {
        let segment = prop_oneof![Just("a"), Just("b"), Just("c")];
        prop::collection::vec(segment, 1..=6).prop_map(|s| s.join("."))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]
        #[test]
        fn router_agrees_with_the_reference_matcher(
            patterns in prop::collection::vec(pattern(), 1..=20),
            topics in prop::collection::vec(topic(), 1..=8),
        ) {
            let refs: Vec<&str> = patterns.iter().map(String::as_str).collect();
            let r = router(&refs);
            prop_assert_eq!(r.len(), patterns.len());
            for topic in &topics {
                prop_assert_eq!(routed(&r, topic), naive(&patterns, topic), "topic {}", topic);
            }
        }
    }
}
