//! Compiling `schemas:` (issue 16): each file read relative to the policy,
//! parsed, compiled with the validator once; shadowed entries, unreadable
//! or invalid files and remote `$ref`s refused with the entry's line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_saphyr::{Location, Spanned};

use super::super::raw::{RawSchema, Str};
use super::super::schemas::{CompiledSchema, SchemaEntry, SchemaMode, Schemas, Selection};
use super::Compiler;
use crate::domain::{EventVersion, TopicPattern};

/// A schema file larger than this is refused.
const MAX_SCHEMA_BYTES: u64 = 1024 * 1024;

impl Compiler<'_> {
    pub fn schemas(&mut self, raw: &[Spanned<RawSchema>]) -> Schemas {
        let mut entries: Vec<(usize, SchemaEntry)> = Vec::new();
        for (i, spanned) in raw.iter().enumerate() {
            let path = format!("schemas[{i}]");
            if let Some(entry) = self.schema_entry(&spanned.value, &path, spanned.referenced) {
                if let Some((j, earlier)) =
                    entries.iter().find(|(_, e)| e.topic.covers(&entry.topic))
                {
                    self.error(
                        format!("{path}.topic"),
                        spanned.value.topic.referenced,
                        format!(
                            "topic {} is shadowed by schemas[{j}] ({}), which matches every topic it does: \
                             the first matching entry applies, so this one never would",
                            entry.topic, earlier.topic
                        ),
                    );
                    continue;
                }
                entries.push((i, entry));
            }
        }
        Schemas::new(entries.into_iter().map(|(_, e)| e).collect())
    }

    fn schema_entry(&mut self, raw: &RawSchema, path: &str, loc: Location) -> Option<SchemaEntry> {
        let topic = self
            .string(&raw.topic, &format!("{path}.topic"))
            .and_then(|t| {
                TopicPattern::parse(&t)
                    .map_err(|e| {
                        self.error(
                            format!("{path}.topic"),
                            raw.topic.referenced,
                            format!("invalid topic pattern {t:?}: {e}"),
                        )
                    })
                    .ok()
            });
        let mode = match &raw.mode {
            None => Some(SchemaMode::Enforce),
            Some(m) => match self.string(m, &format!("{path}.mode")).as_deref() {
                Some("enforce") => Some(SchemaMode::Enforce),
                Some("warn") => Some(SchemaMode::Warn),
                Some(other) => {
                    self.error(
                        format!("{path}.mode"),
                        m.referenced,
                        format!("unknown mode {other:?}; expected enforce or warn"),
                    );
                    None
                }
                None => None,
            },
        };
        let selection = match (&raw.file, &raw.versions) {
            (Some(file), None) => self
                .schema_file(file, &format!("{path}.file"))
                .map(Selection::One),
            (None, Some(versions)) => self.schema_versions(versions, &format!("{path}.versions")),
            (Some(_), Some(_)) => {
                self.error(path, loc, "set only one of `file` and `versions`");
                None
            }
            (None, None) => {
                self.error(path, loc, "a schema entry needs `file` or `versions`");
                None
            }
        };
        Some(SchemaEntry {
            topic: topic?,
            mode: mode?,
            selection: selection?,
        })
    }

    fn schema_versions(
        &mut self,
        versions: &Spanned<BTreeMap<String, Str>>,
        path: &str,
    ) -> Option<Selection> {
        if versions.value.is_empty() {
            self.error(path, versions.referenced, "list at least one version");
            return None;
        }
        let mut map = BTreeMap::new();
        let mut ok = true;
        for (key, file) in &versions.value {
            let p = format!("{path}.{key}");
            let major = match EventVersion::parse(key) {
                Ok(v) if v == EventVersion::parse(&v.major().to_string()).ok()? => v.major(),
                _ => {
                    self.error(
                        &p,
                        file.referenced,
                        format!("version keys are major versions (1, 2, …), got {key:?}"),
                    );
                    ok = false;
                    continue;
                }
            };
            match self.schema_file(file, &p) {
                Some(s) => {
                    if map.insert(major, s).is_some() {
                        self.error(
                            &p,
                            file.referenced,
                            format!("version {major} is listed twice"),
                        );
                        ok = false;
                    }
                }
                None => ok = false,
            }
        }
        ok.then_some(Selection::Versions(map))
    }

    /// Reads, parses and compiles one schema file.
    fn schema_file(&mut self, file: &Str, path: &str) -> Option<CompiledSchema> {
        let name = self.string(file, path)?;
        let full = self.base_dir.join(&name);
        let fail = |c: &mut Self, message: String| {
            c.error(path, file.referenced, format!("schema {name}: {message}"));
            None
        };
        let text = match std::fs::metadata(&full) {
            Ok(m) if m.len() > MAX_SCHEMA_BYTES => {
                return fail(
                    self,
                    format!("{} bytes; the limit is {MAX_SCHEMA_BYTES}", m.len()),
                );
            }
            Ok(_) => match std::fs::read_to_string(&full) {
                Ok(t) => t,
                Err(e) => return fail(self, format!("cannot read {}: {e}", full.display())),
            },
            Err(e) => return fail(self, format!("cannot read {}: {e}", full.display())),
        };
        self.included
            .push((full.clone(), text.clone().into_bytes()));
        let schema: serde_json::Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => return fail(self, format!("not JSON: {e}")),
        };
        if let Some(reference) = remote_ref(&schema) {
            return fail(
                self,
                format!(
                    "`$ref` to {reference:?} is refused: schemas resolve only locally \
                     (no network fetches at load)"
                ),
            );
        }
        let dir = full
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let base = std::fs::canonicalize(&full).unwrap_or(full.clone());
        let base = match url::Url::from_file_path(&base) {
            Ok(url) => url,
            Err(()) => return fail(self, format!("{} is not an absolute path", base.display())),
        };
        // Files a `$ref` reads join the policy's fingerprint too, so an edit
        // of one applies on the next reload.
        let read = Arc::new(Mutex::new(Vec::new()));
        let options = jsonschema::options()
            .with_retriever(LocalFiles {
                dir: std::fs::canonicalize(&dir).unwrap_or(dir),
                read: read.clone(),
            })
            .with_base_uri(base.to_string())
            // `pattern` may use lookaround (fancy-regex): bound the work one
            // hostile string can cost (the crate's default is a million steps).
            .with_pattern_options(
                jsonschema::PatternOptions::fancy_regex().backtrack_limit(10_000),
            );
        let built = options.build(&schema);
        self.included.extend(
            read.lock()
                .map(|mut r| std::mem::take(&mut *r))
                .unwrap_or_default(),
        );
        match built {
            Ok(validator) => Some(CompiledSchema::new(name.clone(), validator)),
            Err(e) => fail(self, format!("not a valid JSON Schema: {}", e.masked())),
        }
    }
}

/// The first `$ref` or `$dynamicRef` naming an absolute non-file URL.
fn remote_ref(schema: &serde_json::Value) -> Option<String> {
    let mut stack = vec![schema];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    if let ("$ref" | "$dynamicRef", serde_json::Value::String(r)) = (k.as_str(), v)
                        && let Ok(url) = url::Url::parse(r)
                        && url.scheme() != "file"
                    {
                        return Some(r.clone());
                    }
                    stack.push(v);
                }
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    None
}

/// Resolves `$ref`s to files beside the schema (or below its directory),
/// never anything else: no network, no file outside that directory.
struct LocalFiles {
    dir: PathBuf,
    /// Every file read: its path and bytes.
    read: Arc<Mutex<Vec<Included>>>,
}

/// A file the policy includes: its name and bytes.
type Included = (PathBuf, Vec<u8>);

impl jsonschema::Retrieve for LocalFiles {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<serde_json::Value, Box<dyn std::error::Error + Send + Sync>> {
        let text = uri.as_str();
        let path = url::Url::parse(text)
            .ok()
            .filter(|u| u.scheme() == "file")
            .and_then(|u| u.to_file_path().ok())
            .ok_or_else(|| format!("{text} is refused: schemas resolve only from local files"))?;
        let path = std::fs::canonicalize(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if !path.starts_with(&self.dir) {
            return Err(format!(
                "{} is outside the schema's directory {}",
                path.display(),
                self.dir.display()
            )
            .into());
        }
        if std::fs::metadata(&path)?.len() > MAX_SCHEMA_BYTES {
            return Err(
                format!("{} is larger than {MAX_SCHEMA_BYTES} bytes", path.display()).into(),
            );
        }
        let bytes = std::fs::read(&path)?;
        let value = serde_json::from_slice(&bytes)?;
        if let Ok(mut read) = self.read.lock() {
            read.push((path, bytes));
        }
        Ok(value)
    }
}
