//! Policy errors: every problem names the file, the YAML path, the line and
//! column, and what was expected. Loading collects all of them rather than
//! stopping at the first, so an admin fixes a file in one pass.

use std::fmt;

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// Dotted YAML path, e.g. `webhooks[2].topics[0]`; empty for the document itself.
    pub path: String,
    /// 1-based; 0 when the parser could not tell.
    pub line: u64,
    /// 1-based; 0 when the parser could not tell.
    pub column: u64,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Everything wrong with one policy file. Never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors {
    /// The file the errors are about (`<input>` for text given directly).
    pub source_name: String,
    pub errors: Vec<PolicyError>,
}

impl PolicyErrors {
    pub(crate) fn single(source_name: &str, error: PolicyError) -> Self {
        Self {
            source_name: source_name.to_owned(),
            errors: vec![error],
        }
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(
            f,
            "{}: {n} error{} in policy",
            self.source_name,
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            write!(f, "\n  {}:{e}", self.source_name)?;
        }
        Ok(())
    }
}
