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
        match token {
            Token::BeginObject => {
                path.value();
                path.push(Seg::Object);
                starts.push(names.len());
            }
            Token::BeginArray => {
                path.value();
                path.push(Seg::Array(0));
            }
            Token::EndObject => {
                path.pop();
                let start = starts.pop().unwrap_or(0);
                let own = &mut names[start..];
                if own.len() > 1 {
                    own.sort_unstable();
                    if let Some(w) = own.windows(2).find(|w| w[0] == w[1]) {
                        // Re-walk to name where the object is; rare, so not tracked.
                        return Err(PayloadError::DuplicateKey {
                            pointer: pointer_of_object_ending_at(text, lexer.offset()),
                            name: shown(&w[0]),
                        });
                    }
                }
                names.truncate(start);
            }
            Token::EndArray => path.pop(),
            Token::Key(name) => {
                path.key(name);
                names.push(name.decode());
            }
            Token::Number(n) => {
                path.value();
                // Only a long exponent can overflow; most numbers have none.
                if n.len() > 32 && n.contains(['e', 'E']) && canonical_number(n).is_none() {
                    return Err(PayloadError::ExponentOutOfRange {
                        pointer: path.pointer(),
                    });
                }
            }
            Token::String(_) | Token::Literal(_) => path.value(),
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
                    return Err(PayloadError::DuplicateKey {
                        pointer: pointer_of_object_ending_at(text, lexer.offset()),
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
    let (negative, rest) = match n.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, n),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let mut exp: i128 = 0;
    if !exponent.is_empty() {
        let (sign, digits) = match exponent.as_bytes()[0] {
            b'-' => (-1, &exponent[1..]),
            b'+' => (1, &exponent[1..]),
            _ => (1, exponent),
        };
        for d in digits.bytes() {
            exp = exp
                .checked_mul(10)?
                .checked_add(sign * i128::from(d - b'0'))?;
        }
    }
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    exp = exp.checked_sub(i128::try_from(frac.len()).ok()?)?;
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    let trimmed = digits.trim_end_matches('0');
    if trimmed.is_empty() {
        return Some("0".into());
    }
    exp = exp.checked_add(i128::try_from(digits.len() - trimmed.len()).ok()?)?;
    let sign = if negative { "-" } else { "" };
    Some(format!("{sign}{trimmed}e{exp}"))
}

/// The JSON pointer of the object whose `}` ends just before `end`; only
/// for error messages, so it walks the text again rather than keep a path
/// for every payload.
fn pointer_of_object_ending_at(text: &str, end: usize) -> String {
    let mut lexer = Lexer::new(text);
    let mut path = Path::default();
    while let Ok(Some(token)) = lexer.next() {
        match token {
            Token::BeginObject => {
                path.value();
                path.push(Seg::Object);
            }
            Token::BeginArray => {
                path.value();
                path.push(Seg::Array(0));
            }
            Token::EndObject => {
                path.pop();
                if lexer.offset() >= end {
                    // What is left is the path to the object itself.
                    return path.pointer();
                }
            }
            Token::EndArray => path.pop(),
            Token::Key(name) => path.key(name),
            _ => path.value(),
        }
    }
    String::new()
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

/// A JSON string's text between its quotes, escapes not yet decoded.
#[derive(Clone, Copy)]
struct Str<'a> {
    raw: &'a str,
    escaped: bool,
}

impl<'a> Str<'a> {
    /// The string's code points as (generalised) UTF-8: a lone surrogate is
    /// kept as its own three-byte sequence (WTF-8), so distinct strings
    /// never decode alike.
    fn decode(self) -> Cow<'a, [u8]> {
        if !self.escaped {
            return Cow::Borrowed(self.raw.as_bytes());
        }
        let b = self.raw.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] != b'\\' {
                out.push(b[i]);
                i += 1;
                continue;
            }
            let c = b[i + 1];
            i += 2;
            let simple = match c {
                b'b' => 0x08,
                b'f' => 0x0c,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'u' => {
                    let mut cp = hex4(&b[i..]);
                    i += 4;
                    let low = (0xD800..0xDC00).contains(&cp)
                        && b.get(i) == Some(&b'\\')
                        && b.get(i + 1) == Some(&b'u')
                        && (0xDC00..0xE000).contains(&hex4(&b[i + 2..]));
                    if low {
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (hex4(&b[i + 2..]) - 0xDC00);
                        i += 6;
                    }
                    push_code_point(&mut out, cp);
                    continue;
                }
                other => other, // `"`, `\` and `/` stand for themselves.
            };
            out.push(simple);
        }
        Cow::Owned(out)
    }
}

/// The value of four hex digits (the lexer has checked they are).
fn hex4(b: &[u8]) -> u32 {
    b.iter().take(4).fold(0, |acc, &d| {
        acc * 16 + char::from(d).to_digit(16).unwrap_or(0)
    })
}

/// Generalised UTF-8 of any code point up to U+10FFFF, surrogates included.
fn push_code_point(out: &mut Vec<u8>, cp: u32) {
    // The casts keep the low bits on purpose: each byte is masked first.
    let byte = |v: u32| u8::try_from(v & 0xFF).unwrap_or(0);
    match cp {
        0..0x80 => out.push(byte(cp)),
        0x80..0x800 => out.extend([byte(0xC0 | (cp >> 6)), byte(0x80 | (cp & 0x3F))]),
        0x800..0x10000 => out.extend([
            byte(0xE0 | (cp >> 12)),
            byte(0x80 | ((cp >> 6) & 0x3F)),
            byte(0x80 | (cp & 0x3F)),
        ]),
        _ => out.extend([
            byte(0xF0 | (cp >> 18)),
            byte(0x80 | ((cp >> 12) & 0x3F)),
            byte(0x80 | ((cp >> 6) & 0x3F)),
            byte(0x80 | (cp & 0x3F)),
        ]),
    }
}

/// One token of a JSON text.
enum Token<'a> {
    BeginObject,
    EndObject,
    BeginArray,
    EndArray,
    Key(Str<'a>),
    String(Str<'a>),
    Number(&'a str),
    Literal(&'static str),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Any value (the document's, or an array element after `,`).
    Value,
    /// Right after `[`: a value or `]`.
    ValueOrEnd,
    /// Right after `{`: a member name or `}`.
    KeyOrEnd,
    /// After `,` in an object.
    Key,
    /// After a value inside a container.
    CommaOrEnd,
    /// After the document's value: only whitespace.
    Done,
}

/// A strict RFC 8259 tokenizer with an explicit stack of open containers
/// (one byte per level).
struct Lexer<'a> {
    text: &'a str,
    i: usize,
    open: Vec<u8>,
    expect: Expect,
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            i: 0,
            open: Vec::new(),
            expect: Expect::Value,
        }
    }

    /// Bytes consumed so far.
    fn offset(&self) -> usize {
        self.i
    }

    fn fail(&self, reason: &'static str) -> PayloadError {
        PayloadError::Malformed {
            offset: self.i,
            reason,
        }
    }

    fn next(&mut self) -> Result<Option<Token<'a>>, PayloadError> {
        let b = self.text.as_bytes();
        loop {
            while self.i < b.len() && matches!(b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
                self.i += 1;
            }
            let Some(&c) = b.get(self.i) else {
                return if self.expect == Expect::Done {
                    Ok(None)
                } else {
                    Err(self.fail("unexpected end"))
                };
            };
            match self.expect {
                Expect::Done => return Err(self.fail("text after the value")),
                Expect::CommaOrEnd => {
                    self.i += 1;
                    match (c, self.open.last()) {
                        (b',', Some(b'{')) => self.expect = Expect::Key,
                        (b',', _) => self.expect = Expect::Value,
                        (b'}', Some(b'{')) => return Ok(Some(self.close(Token::EndObject))),
                        (b']', Some(b'[')) => return Ok(Some(self.close(Token::EndArray))),
                        _ => {
                            self.i -= 1;
                            return Err(self.fail("expected `,` or the container's end"));
                        }
                    }
                }
                Expect::Key | Expect::KeyOrEnd => {
                    if c == b'}' && self.expect == Expect::KeyOrEnd {
                        self.i += 1;
                        return Ok(Some(self.close(Token::EndObject)));
                    }
                    if c != b'"' {
                        return Err(self.fail("expected a member name"));
                    }
                    let name = self.string()?;
                    while self.i < b.len() && matches!(b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
                        self.i += 1;
                    }
                    if b.get(self.i) != Some(&b':') {
                        return Err(self.fail("expected `:`"));
                    }
                    self.i += 1;
                    self.expect = Expect::Value;
                    return Ok(Some(Token::Key(name)));
                }
                Expect::Value | Expect::ValueOrEnd => {
                    if c == b']' && self.expect == Expect::ValueOrEnd {
                        self.i += 1;
                        return Ok(Some(self.close(Token::EndArray)));
                    }
                    return self.value(c).map(Some);
                }
            }
        }
    }

    fn close(&mut self, token: Token<'a>) -> Token<'a> {
        self.open.pop();
        self.after_value();
        token
    }

    fn after_value(&mut self) {
        self.expect = if self.open.is_empty() {
            Expect::Done
        } else {
            Expect::CommaOrEnd
        };
    }

    fn value(&mut self, c: u8) -> Result<Token<'a>, PayloadError> {
        let token = match c {
            b'{' | b'[' => {
                self.i += 1;
                self.open.push(c);
                if c == b'{' {
                    self.expect = Expect::KeyOrEnd;
                    return Ok(Token::BeginObject);
                }
                self.expect = Expect::ValueOrEnd;
                return Ok(Token::BeginArray);
            }
            b'"' => Token::String(self.string()?),
            b't' => Token::Literal(self.literal("true")?),
            b'f' => Token::Literal(self.literal("false")?),
            b'n' => Token::Literal(self.literal("null")?),
            b'-' | b'0'..=b'9' => Token::Number(self.number()?),
            _ => return Err(self.fail("expected a value")),
        };
        self.after_value();
        Ok(token)
    }

    fn literal(&mut self, word: &'static str) -> Result<&'static str, PayloadError> {
        if self.text[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(word)
        } else {
            Err(self.fail("unknown literal"))
        }
    }

    fn number(&mut self) -> Result<&'a str, PayloadError> {
        let b = self.text.as_bytes();
        let start = self.i;
        let digits = |i: &mut usize| {
            let from = *i;
            while *i < b.len() && b[*i].is_ascii_digit() {
                *i += 1;
            }
            *i - from
        };
        let mut i = self.i;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                digits(&mut i);
            }
            _ => return Err(self.fail("a number needs digits")),
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if digits(&mut i) == 0 {
                self.i = i;
                return Err(self.fail("a fraction needs digits"));
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if digits(&mut i) == 0 {
                self.i = i;
                return Err(self.fail("an exponent needs digits"));
            }
        }
        self.i = i;
        Ok(&self.text[start..i])
    }

    /// A string starting at the `"` under the cursor; leaves the cursor
    /// after its closing quote.
    fn string(&mut self) -> Result<Str<'a>, PayloadError> {
        let b = self.text.as_bytes();
        let start = self.i + 1;
        let mut i = start;
        let mut escaped = false;
        loop {
            match b.get(i) {
                None => {
                    self.i = i;
                    return Err(self.fail("unterminated string"));
                }
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    match b.get(i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                        Some(b'u')
                            if b.len() >= i + 6
                                && b[i + 2..i + 6].iter().all(u8::is_ascii_hexdigit) =>
                        {
                            i += 6;
                        }
                        _ => {
                            self.i = i;
                            return Err(self.fail("invalid escape"));
                        }
                    }
                }
                Some(&c) if c < 0x20 => {
                    self.i = i;
                    return Err(self.fail("control character in a string"));
                }
                Some(_) => i += 1,
            }
        }
        self.i = i + 1;
        Ok(Str {
            raw: &self.text[start..i],
            escaped,
        })
    }
}

#[cfg(test)]
mod tests;
