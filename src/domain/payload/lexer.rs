//! A strict RFC 8259 tokenizer over a `&str` with an explicit stack of open
//! containers (one byte per level), and the decoding of string escapes into
//! code points. No recursion, no allocation per token.

use std::borrow::Cow;

use super::PayloadError;

/// A JSON string's text between its quotes, escapes not yet decoded.
#[derive(Clone, Copy)]
pub(super) struct Str<'a> {
    raw: &'a str,
    escaped: bool,
}

impl<'a> Str<'a> {
    /// The string's code points as (generalised) UTF-8: a lone surrogate is
    /// kept as its own three-byte sequence (WTF-8), so distinct strings
    /// never decode alike.
    pub(super) fn decode(self) -> Cow<'a, [u8]> {
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
pub(super) enum Token<'a> {
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
pub(super) struct Lexer<'a> {
    text: &'a str,
    i: usize,
    open: Vec<u8>,
    expect: Expect,
}

impl<'a> Lexer<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Self {
            text,
            i: 0,
            open: Vec::new(),
            expect: Expect::Value,
        }
    }

    fn fail(&self, reason: &'static str) -> PayloadError {
        PayloadError::Malformed {
            offset: self.i,
            reason,
        }
    }

    pub(super) fn next(&mut self) -> Result<Option<Token<'a>>, PayloadError> {
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
