//! An error with its causes, as one line of text.

use std::error::Error;
use std::fmt;

/// Displays an error followed by each of its causes after `: ` — what a
/// log line or a stored failure needs, where the top-level text alone
/// (`database error`, `error sending request`) says nothing.
#[derive(Debug, Clone, Copy)]
pub struct Causes<'a>(pub &'a dyn Error);

impl fmt::Display for Causes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}
