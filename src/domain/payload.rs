//! A payload's identity as a JSON value (contract §2: a re-sent event is a
//! duplicate when "topic and payload compare as JSON values"), and the
//! checks ingest applies to a payload before storing its bytes.
//!
//! Everything here walks the text with an explicit stack, never recursion,
//! so no nesting depth can overflow a stack or hit a parser's recursion
//! limit — a 50,000-deep array is as comparable as a flat one. Pure: no I/O.
//!
//! **Equality.** Two payloads are the same value when their [`digest`]s are
//! equal. The digest is a Merkle-style SHA-256 over the canonical form:
//! whitespace is ignored, object members are compared as a set (order does
//! not matter), strings by their code points (`"\u00e9"` = `"é"`, lone
//! surrogates kept as such), and numbers by their exact decimal value
//! (`1.50` = `1.5` = `15e-1`, `1` = `1.0`, `-0` = `0`, and `1e400` compared
//! exactly, not through `f64`).
//!
//! **Refused at ingest** ([`check`]): an object with the same member name
//! twice (RFC 7493 I-JSON; receivers' parsers disagree on which copy wins, so
//! the engine and a receiver could see different events), and a number whose
//! exponent does not fit 38 digits (its exact value cannot be compared).

use std::borrow::Cow;

use sha2::{Digest, Sha256};

mod lexer;

use lexer::{Lexer, Str, Token};

/// Why a payload cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("duplicate member name {name:?} in the object at {pointer:?}")]
    DuplicateKey { pointer: String, name: String },
    #[error("a number at {pointer:?} has an exponent too large to compare exactly")]
    ExponentOutOfRange { pointer: String },
    #[error("not JSON at byte {offset}: {reason}")]
    Malformed { offset: usize, reason: &'static str },
}

/// Checks what ingest refuses (see the module docs); the text must be JSON.
pub fn check(text: &str) -> Result<(), PayloadError> {
    let mut lexer = Lexer::new(text);
    let mut path = Path::default();
    // Member names of every open object in one vector (no allocation per
    // object); each open object remembers where its names start.
    let mut names: Vec<Cow<'_, [u8]>> = Vec::new();
    let mut starts: Vec<usize> = Vec::new();
    while let Some(token) = lexer.next()? {
        path.follow(&token);
        match token {
            Token::BeginObject => starts.push(names.len()),
            Token::EndObject => {
                // `path` now names the object that just closed.
                let start = starts.pop().unwrap_or(0);
                let own = &mut names[start..];
                if own.len() > 1 {
                    own.sort_unstable();
                    if let Some(w) = own.windows(2).find(|w| w[0] == w[1]) {
                        return Err(PayloadError::DuplicateKey {
                            pointer: path.pointer(),
                            name: shown(&w[0]),
                        });
                    }
                }
                names.truncate(start);
            }
            Token::Key(name) => names.push(name.decode()),
            // Only a long exponent can overflow; most numbers have none.
            Token::Number(n)
                if n.len() > 32 && n.contains(['e', 'E']) && canonical_number(n).is_none() =>
            {
                return Err(PayloadError::ExponentOutOfRange {
                    pointer: path.pointer(),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// The payload's identity as a JSON value (see the module docs).
pub fn digest(text: &str) -> Result<[u8; 32], PayloadError> {
    let mut lexer = Lexer::new(text);
    // Digests of the members or elements of every open container, in one
    // vector; a member is two entries (name, value). Each open container
    // remembers where its entries start.
    let mut pending: Vec<[u8; 32]> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    let mut done = None;
    while let Some(token) = lexer.next()? {
        let value = match token {
            Token::BeginObject | Token::BeginArray => {
                open.push(pending.len());
                continue;
            }
            Token::Key(name) => {
                pending.push(leaf(b's', &name.decode()));
                continue;
            }
            Token::EndArray => {
                let start = open.pop().unwrap_or(0);
                let mut h = Sha256::new_with_prefix(b"a");
                for d in &pending[start..] {
                    h.update(d);
                }
                pending.truncate(start);
                h.finalize().into()
            }
            Token::EndObject => {
                let start = open.pop().unwrap_or(0);
                let mut members: Vec<&[[u8; 32]]> = pending[start..].chunks(2).collect();
                members.sort_unstable();
                if members.windows(2).any(|w| w[0][0] == w[1][0]) {
                    // Only `check` reports where; here it only makes the
                    // text incomparable.
                    return Err(PayloadError::DuplicateKey {
                        pointer: String::new(),
                        name: String::new(),
                    });
                }
                let mut h = Sha256::new_with_prefix(b"o");
                for m in members {
                    for d in m {
                        h.update(d);
                    }
                }
                pending.truncate(start);
                h.finalize().into()
            }
            Token::String(s) => leaf(b's', &s.decode()),
            Token::Number(n) => {
                let canonical = canonical_number(n).ok_or(PayloadError::ExponentOutOfRange {
                    pointer: String::new(),
                })?;
                leaf(b'n', canonical.as_bytes())
            }
            Token::Literal(l) => leaf(b'l', l.as_bytes()),
        };
        if open.is_empty() {
            done = Some(value);
        } else {
            pending.push(value);
        }
    }
    done.ok_or(PayloadError::Malformed {
        offset: 0,
        reason: "no value",
    })
}

/// Whether two payload texts are the same JSON value. Equal bytes are (the
/// usual re-send); otherwise both are canonicalised. Text that is not JSON
/// equals only itself.
pub fn same_value(a: &str, b: &str) -> bool {
    a == b || matches!((digest(a), digest(b)), (Ok(x), Ok(y)) if x == y)
}

fn leaf(tag: u8, bytes: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new_with_prefix([tag]);
    h.update(bytes);
    h.finalize().into()
}

/// The exact decimal value of a JSON number as `[-]digits e exponent`, with
/// no leading or trailing zeros in `digits` (zero is `0`); `None` if the
/// exponent does not fit an `i128`. `n` must match the JSON number grammar.
fn canonical_number(n: &str) -> Option<String> {
    super::decimal::Decimal::parse(n).map(|d| d.canonical())
}

/// At most 64 characters of `bytes`, for messages.
fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    match text.char_indices().nth(64) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.into_owned(),
    }
}

/// Where the walk is, for JSON pointers in messages. Only the first
/// [`Path::SHOWN`] levels are spelled out; deeper ones are counted.
#[derive(Default)]
struct Path<'a> {
    segs: Vec<Seg<'a>>,
    hidden: usize,
}

enum Seg<'a> {
    /// The next array element gets this index.
    Array(usize),
    Object,
    Member(Str<'a>),
}

impl<'a> Path<'a> {
    const SHOWN: usize = 64;

    /// Moves along with `token`: after a closing token the path names the
    /// container that closed, after a scalar the scalar.
    fn follow(&mut self, token: &Token<'a>) {
        match token {
            Token::BeginObject => {
                self.value();
                self.push(Seg::Object);
            }
            Token::BeginArray => {
                self.value();
                self.push(Seg::Array(0));
            }
            Token::EndObject | Token::EndArray => self.pop(),
            Token::Key(name) => self.key(*name),
            Token::String(_) | Token::Number(_) | Token::Literal(_) => self.value(),
        }
    }

    fn push(&mut self, seg: Seg<'a>) {
        if self.hidden > 0 || self.segs.len() >= Self::SHOWN {
            self.hidden += 1;
        } else {
            self.segs.push(seg);
        }
    }

    fn pop(&mut self) {
        if self.hidden > 0 {
            self.hidden -= 1;
        } else if let Some(Seg::Member(_)) = self.segs.last() {
            // Leaving an object closes its member segment and the object.
            self.segs.pop();
            self.segs.pop();
        } else {
            self.segs.pop();
        }
    }

    fn key(&mut self, name: Str<'a>) {
        if self.hidden > 0 {
            return;
        }
        if let Some(Seg::Member(_)) = self.segs.last() {
            self.segs.pop();
        }
        self.segs.push(Seg::Member(name));
    }

    /// A value starts here: an array's next element gets the next index.
    fn value(&mut self) {
        if self.hidden > 0 {
            return;
        }
        if let Some(Seg::Array(i)) = self.segs.last_mut() {
            *i += 1;
        }
    }

    fn pointer(&self) -> String {
        let mut out = String::new();
        for seg in &self.segs {
            match seg {
                Seg::Array(next) => out.push_str(&format!("/{}", next.saturating_sub(1))),
                Seg::Member(name) => {
                    let name = shown(&name.decode());
                    out.push('/');
                    out.push_str(&name.replace('~', "~0").replace('/', "~1"));
                }
                Seg::Object => {}
            }
        }
        if self.hidden > 0 {
            out.push_str("/…");
        }
        out
    }
}

#[cfg(test)]
mod tests;
