//! The policy file (`policies/webhooks.yaml`, contract §1): parsed with
//! serde-saphyr under a strict budget, validated, and compiled into one
//! immutable [`PolicySet`] with a topic index. Pure: the only I/O is reading
//! the file and the secret/key files it names, at load time.
//!
//! A reload builds a fresh `PolicySet` and swaps it whole; nothing here is
//! ever mutated after `load`.

pub mod bus;
mod compile;
mod duration;
mod error;
pub mod filter;
mod interp;
mod model;
mod raw;
pub mod reach;
pub mod router;
pub mod schemas;
pub mod sources;
mod yaml_path;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use duration::parse_duration;
pub use error::{PolicyError, PolicyErrors};
pub use model::{
    ApiKey, AuthPolicy, InboundPolicy, JwtConfig, JwtKey, NetworkPolicy, PayloadFormat,
    RetentionPolicy, RetryPolicy, SignatureMode, Webhook,
};
use router::{Router, RouterBuilder};

use crate::domain::{Topic, TopicPattern};

/// Policy files larger than this are refused before parsing.
pub const MAX_POLICY_BYTES: usize = 1024 * 1024;

/// One webhook an event goes to, and the first of its patterns that matched.
#[derive(Debug, Clone, Copy)]
pub struct Route<'a> {
    pub webhook: &'a Webhook,
    pub pattern: &'a TopicPattern,
}

/// A validated, immutable policy.
#[derive(Debug)]
pub struct PolicySet {
    webhooks: Vec<Webhook>,
    by_id: HashMap<String, usize>,
    /// How many webhooks are `enabled` in the file.
    enabled: usize,
    /// Values are (webhook index, pattern index within that webhook).
    router: Router<(u32, u16)>,
    inbound: Option<InboundPolicy>,
    auth: AuthPolicy,
    network: NetworkPolicy,
    retention: RetentionPolicy,
    sources: Vec<sources::Source>,
    schemas: schemas::Schemas,
    sha256: String,
    /// The file and every file it reads: what a reload compares.
    fingerprint: String,
    /// Every file the policy read besides itself (secrets, keys, schemas,
    /// source credentials), for the file watcher.
    files: Vec<PathBuf>,
}

/// The policy's own sha256 when it includes no file, else a digest over the
/// text and each included file's name and bytes.
fn fingerprint(text: &str, included: &[(PathBuf, Vec<u8>)]) -> String {
    let mut digest = Sha256::new();
    digest.update(text.as_bytes());
    if included.is_empty() {
        return hex::encode(digest.finalize());
    }
    for (path, bytes) in included {
        let name = path.as_os_str().as_encoded_bytes();
        digest.update((name.len() as u64).to_le_bytes());
        digest.update(name);
        digest.update((bytes.len() as u64).to_le_bytes());
        digest.update(bytes);
    }
    hex::encode(digest.finalize())
}

impl PolicySet {
    /// Loads a policy file, resolving `${NAME}` from the process environment.
    pub fn load_file(path: &Path) -> Result<Self, PolicyErrors> {
        Self::load_file_with_env(path, &|name| std::env::var(name).ok())
    }

    /// Loads a policy file with an explicit variable lookup.
    pub fn load_file_with_env(
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, PolicyErrors> {
        let name = path.display().to_string();
        let fail = |message: String| {
            PolicyErrors::single(
                &name,
                PolicyError {
                    path: String::new(),
                    line: 0,
                    column: 0,
                    message,
                },
            )
        };
        let meta =
            std::fs::metadata(path).map_err(|e| fail(format!("cannot read policy file: {e}")))?;
        if meta.len() > MAX_POLICY_BYTES as u64 {
            return Err(fail(format!(
                "policy file is {} bytes; the limit is {MAX_POLICY_BYTES}",
                meta.len()
            )));
        }
        let bytes =
            std::fs::read(path).map_err(|e| fail(format!("cannot read policy file: {e}")))?;
        let text =
            String::from_utf8(bytes).map_err(|e| fail(format!("policy file is not UTF-8: {e}")))?;
        let base_dir = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, &name, base_dir, env)
    }

    /// Parses and validates policy text. `source_name` labels errors;
    /// relative `secret_file`/`public_key_file` paths resolve against `base_dir`.
    pub fn parse(
        text: &str,
        source_name: &str,
        base_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, PolicyErrors> {
        let fail = |error: PolicyError| PolicyErrors::single(source_name, error);
        if text.len() > MAX_POLICY_BYTES {
            return Err(fail(PolicyError {
                path: String::new(),
                line: 0,
                column: 0,
                message: format!(
                    "policy is {} bytes; the limit is {MAX_POLICY_BYTES}",
                    text.len()
                ),
            }));
        }
        let raw: raw::RawPolicy = serde_saphyr::from_str_with_options(text, parse_options())
            .map_err(|e| fail(yaml_error(text, &e)))?;

        let mut c = compile::Compiler {
            env,
            base_dir,
            errors: Vec::new(),
            included: Vec::new(),
        };
        if raw.version.value != 1 {
            c.error(
                "version",
                raw.version.referenced,
                format!("unsupported version {}; expected 1", raw.version.value),
            );
        }
        let defaults = c.defaults(&raw.defaults);
        let network = c.network(&raw.network);
        let webhooks = c.webhooks(&raw.webhooks, defaults, network.proxy.as_ref());
        let inbound = c.inbound(&raw.inbound);
        let auth = c.auth(&raw.auth);
        let retention = c.retention(&raw.retention);
        let sources = c.sources(&raw.sources);
        let schemas = c.schemas(&raw.schemas);
        if !c.errors.is_empty() {
            c.errors.sort_by_key(|e| (e.line, e.column));
            return Err(PolicyErrors {
                source_name: source_name.to_owned(),
                errors: c.errors,
            });
        }

        let mut builder = RouterBuilder::new();
        let mut by_id = HashMap::with_capacity(webhooks.len());
        for (wi, hook) in webhooks.iter().enumerate() {
            by_id.insert(hook.id.as_str().to_owned(), wi);
            for (pi, pattern) in hook.topics.iter().enumerate() {
                // Bounded by the policy size limit: far below u32/u16.
                builder.insert(pattern, (wi as u32, pi as u16));
            }
        }
        Ok(Self {
            enabled: webhooks.iter().filter(|w| w.enabled).count(),
            webhooks,
            by_id,
            router: builder.build(),
            inbound,
            auth,
            network,
            retention,
            sources,
            schemas,
            sha256: hex::encode(Sha256::digest(text.as_bytes())),
            fingerprint: fingerprint(text, &c.included),
            files: {
                let mut files: Vec<PathBuf> = c.included.into_iter().map(|(p, _)| p).collect();
                files.sort();
                files.dedup();
                files
            },
        })
    }

    pub fn webhooks(&self) -> &[Webhook] {
        &self.webhooks
    }

    /// How many webhooks are `enabled` in the file (without a scan).
    pub fn enabled_count(&self) -> usize {
        self.enabled
    }

    pub fn webhook(&self, id: &str) -> Option<&Webhook> {
        self.by_id.get(id).map(|&i| &self.webhooks[i])
    }

    pub fn inbound(&self) -> Option<&InboundPolicy> {
        self.inbound.as_ref()
    }

    pub fn auth(&self) -> &AuthPolicy {
        &self.auth
    }

    pub fn network(&self) -> &NetworkPolicy {
        &self.network
    }

    /// The `schemas:` entries, compiled.
    pub fn schemas(&self) -> &schemas::Schemas {
        &self.schemas
    }

    pub fn retention(&self) -> RetentionPolicy {
        self.retention
    }

    /// The event-bus sources, in file order.
    pub fn sources(&self) -> &[sources::Source] {
        &self.sources
    }

    /// Lowercase hex SHA-256 of the policy text, to tell versions apart.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// A digest of the policy text and every file it reads (secret, key,
    /// password and credentials files, schemas): a reload with the same text
    /// but a rotated secret file or an edited schema applies.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The files the policy read besides itself, sorted: what the watcher
    /// watches beside the policy file.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The webhooks an event of `topic` and `tenant` goes to, each once, in
    /// policy order. Disabled webhooks are included: their deliveries are
    /// kept pending, not dropped.
    pub fn route(&self, topic: &Topic, tenant: Option<&str>) -> Vec<Route<'_>> {
        let mut hits = Vec::new();
        self.router.route(topic, &mut hits);
        hits.sort_unstable();
        let mut out: Vec<Route<'_>> = Vec::with_capacity(hits.len());
        let mut last = None;
        for &&(wi, pi) in &hits {
            if last == Some(wi) {
                continue;
            }
            last = Some(wi);
            let webhook = &self.webhooks[wi as usize];
            if webhook.permits_tenant(tenant) {
                out.push(Route {
                    webhook,
                    pattern: &webhook.topics[pi as usize],
                });
            }
        }
        out
    }
}

/// Budgets sized for a hand-written config: generous for real files, tight
/// enough that alias bombs and deep nesting fail fast. Events and nodes are
/// bounded above what a 1 MiB file can hold without aliases (about one per
/// two bytes), so the size limit is what a large flat policy meets — 10,000
/// webhooks with filters among them.
fn parse_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        // YAML 1.2: only `true`/`false` are booleans, so a filter's `NO`
        // (Norway) stays a string and `enabled: yes` is an error.
        strict_booleans: true,
        budget: serde_saphyr::budget! {
            max_depth: 32,
            max_aliases: 200,
            max_anchors: 200,
            max_events: 600_000,
            max_nodes: 600_000,
            max_total_scalar_bytes: MAX_POLICY_BYTES,
            max_documents: 1,
        },
    }
}

fn yaml_error(text: &str, e: &serde_saphyr::Error) -> PolicyError {
    let loc = e.location();
    let line = loc.map_or(0, |l| l.line());
    let column = loc.map_or(0, |l| l.column());
    let mut message = e.without_snippet().to_string();
    // The parser appends the position; ours leads the line already.
    let suffix = format!(" at line {line}, column {column}");
    if let Some(stripped) = message.strip_suffix(&suffix) {
        message = stripped.to_owned();
    }
    PolicyError {
        path: yaml_path::path_at(text, line),
        line,
        column,
        message,
    }
}

#[cfg(test)]
pub(crate) mod tests;
