//! Rate-limit grants.

/// What a request for tokens got.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grant {
    /// Attempts that may start now.
    pub granted: u32,
    /// Seconds until the next whole token, if none was left.
    pub next_in: f64,
}
