//! `schemas:` and the webhook fields of issue 16, as `policy check` sees them.

use super::*;

/// A policy with `schemas` (YAML lines under `schemas:`) whose files live in `dir`.
fn with_schemas(dir: &Path, schemas: &str) -> Result<PolicySet, PolicyErrors> {
    PolicySet::parse(
        &format!("{MINIMAL}schemas:\n{schemas}"),
        "test.yaml",
        dir,
        &no_env,
    )
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write schema");
}

const OBJECT: &str = r#"{"type": "object", "required": ["a"]}"#;

#[test]
fn schema_files_resolve_beside_the_policy_and_select_by_topic_and_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "one.json", OBJECT);
    write(
        dir.path(),
        "two.json",
        r#"{"$schema": "http://json-schema.org/draft-07/schema#", "type": "array"}"#,
    );
    let p = with_schemas(
        dir.path(),
        "  - topic: x.y\n    file: one.json\n  - topic: \"x.*\"\n    versions: {1: one.json, 2: two.json}\n    mode: warn\n",
    )
    .expect("valid");
    assert_eq!(p.schemas().len(), 2);
    let entry = p
        .schemas()
        .for_topic(&Topic::parse("x.z").unwrap())
        .expect("x.*");
    assert_eq!(entry.mode, crate::policy::schemas::SchemaMode::Warn);
    let v2 = crate::domain::EventVersion::parse("2").unwrap();
    assert!(entry.check(Some(&v2), &serde_json::json!([])).is_ok());
    assert!(
        entry.check(None, &serde_json::json!([])).is_err(),
        "no version = 1: an object"
    );
    assert!(p.schemas().for_topic(&Topic::parse("q").unwrap()).is_none());
}

#[test]
fn unreadable_invalid_and_non_json_schema_files_are_named_at_their_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "text.json", "this is not json");
    write(dir.path(), "bad.json", r#"{"type": "no-such-type"}"#);
    let errs = with_schemas(
        dir.path(),
        "  - topic: a\n    file: missing.json\n  - topic: b\n    file: text.json\n  - topic: c\n    file: bad.json\n",
    )
    .expect_err("refused")
    .errors;
    assert_error(&errs, "schemas[0].file", 9, "missing.json: cannot read");
    assert_error(&errs, "schemas[1].file", 11, "text.json: not JSON");
    assert_error(
        &errs,
        "schemas[2].file",
        13,
        "bad.json: not a valid JSON Schema",
    );
}

#[test]
fn a_remote_ref_is_refused_without_a_network_fetch() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 192.0.2.0/24 is TEST-NET-1: a fetch would hang or fail slowly.
    write(
        dir.path(),
        "remote.json",
        r#"{"properties": {"a": {"$ref": "http://192.0.2.1/schema.json"}}}"#,
    );
    write(
        dir.path(),
        "relative.json",
        r#"{"$id": "https://192.0.2.1/s/root.json", "properties": {"a": {"$ref": "other.json"}}}"#,
    );
    write(
        dir.path(),
        "local.json",
        r#"{"properties": {"a": {"$ref": "common.json"}}}"#,
    );
    write(dir.path(), "common.json", r#"{"type": "integer"}"#);
    let started = std::time::Instant::now();
    let errs = with_schemas(
        dir.path(),
        "  - topic: a\n    file: remote.json\n  - topic: b\n    file: relative.json\n",
    )
    .expect_err("refused")
    .errors;
    assert_error(&errs, "schemas[0].file", 9, "schemas resolve only locally");
    assert_error(&errs, "schemas[1].file", 11, "not a valid JSON Schema");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "no network wait"
    );
    // A `$ref` to a file beside the schema resolves.
    let p = with_schemas(dir.path(), "  - topic: a\n    file: local.json\n").expect("local ref");
    let entry = p
        .schemas()
        .for_topic(&Topic::parse("a").unwrap())
        .expect("entry");
    assert!(entry.check(None, &serde_json::json!({"a": 1})).is_ok());
    assert!(entry.check(None, &serde_json::json!({"a": "x"})).is_err());
}

#[test]
fn a_file_read_through_a_ref_is_part_of_the_fingerprint_and_paths_may_need_escaping() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("with space #1");
    std::fs::create_dir(&dir).expect("mkdir");
    write(
        &dir,
        "local.json",
        r#"{"properties": {"a": {"$ref": "common.json"}}}"#,
    );
    write(&dir, "common.json", r#"{"type": "integer"}"#);
    let load = || with_schemas(&dir, "  - topic: a\n    file: local.json\n").expect("valid");
    let before = load();
    let entry = before
        .schemas()
        .for_topic(&Topic::parse("a").unwrap())
        .expect("entry");
    assert!(entry.check(None, &serde_json::json!({"a": "x"})).is_err());
    write(&dir, "common.json", r#"{"type": "string"}"#);
    let after = load();
    assert_eq!(
        before.sha256(),
        after.sha256(),
        "the policy text is the same"
    );
    assert_ne!(
        before.fingerprint(),
        after.fingerprint(),
        "the referenced file changed"
    );
    let entry = after
        .schemas()
        .for_topic(&Topic::parse("a").unwrap())
        .expect("entry");
    assert!(entry.check(None, &serde_json::json!({"a": "x"})).is_ok());
}

#[test]
fn a_shadowed_entry_and_bad_fields_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "s.json", OBJECT);
    let errs = with_schemas(
        dir.path(),
        "  - topic: \"aion.**\"\n    file: s.json\n  - topic: aion.router.decisions\n    file: s.json\n  - topic: q\n    file: s.json\n    mode: strict\n  - topic: r\n  - topic: t\n    file: s.json\n    versions: {1: s.json}\n  - topic: u\n    versions: {v1: s.json}\n",
    )
    .expect_err("refused")
    .errors;
    assert_error(
        &errs,
        "schemas[1].topic",
        10,
        "shadowed by schemas[0] (aion.**)",
    );
    assert_error(&errs, "schemas[2].mode", 14, "expected enforce or warn");
    assert_error(&errs, "schemas[3]", 15, "needs `file` or `versions`");
    assert_error(&errs, "schemas[4]", 16, "only one of `file` and `versions`");
    assert_error(&errs, "schemas[5].versions.v1", 20, "major versions");
}

#[test]
fn min_version_and_payload_format_are_checked() {
    let p = parse(&MINIMAL.replace(
        "topics: [x.y]",
        "topics: [x.y]\n    min_version: \"1.2\"\n    payload_format: standard",
    ))
    .expect("valid");
    let hook = p.webhook("a").expect("a");
    assert_eq!(hook.payload_format, PayloadFormat::Standard);
    let v = |s: &str| crate::domain::EventVersion::parse(s).unwrap();
    assert!(hook.accepts_version(Some(&v("1.2.0"))));
    assert!(hook.accepts_version(Some(&v("2"))));
    assert!(!hook.accepts_version(Some(&v("1.1.9"))));
    assert!(!hook.accepts_version(None), "no version counts as 1");
    let p = parse(&MINIMAL.replace("topics: [x.y]", "topics: [x.y]\n    min_version: 2"))
        .expect("an integer");
    assert!(p.webhook("a").unwrap().accepts_version(Some(&v("2"))));
    let errs = errors(&MINIMAL.replace(
        "topics: [x.y]",
        "topics: [x.y]\n    min_version: two\n    payload_format: cloudevents",
    ));
    assert_error(&errs, "webhooks[0].min_version", 7, "not a version");
    assert_error(
        &errs,
        "webhooks[0].payload_format",
        8,
        "expected aion or standard",
    );
}
