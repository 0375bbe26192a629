use proptest::prelude::*;

use super::*;

#[test]
fn formatting_member_order_and_escapes_do_not_change_the_value() {
    for (a, b) in [
        (
            r#"{"a":1,"b":[true,null]}"#,
            "{ \"b\" : [ true , null ] ,\n \"a\" : 1 }",
        ),
        (r#""é""#, r#""\u00e9""#),
        (r#""\/""#, r#""/""#),
        (r#""😀""#, r#""\ud83d\ude00""#),
        ("1.50", "1.5"),
        ("15e-1", "1.5"),
        ("0.15E+1", "1.5"),
        ("1", "1.0"),
        ("-0", "0"),
        ("0e12", "0.000"),
        ("100", "1e2"),
        ("1e400", "10e399"),
    ] {
        assert!(same_value(a, b), "{a} vs {b}");
        assert_eq!(digest(a), digest(b), "{a} vs {b}");
    }
}

#[test]
fn different_values_differ() {
    for (a, b) in [
        (r#"{"a":1}"#, r#"{"a":2}"#),
        (r#"{"a":1}"#, r#"{"b":1}"#),
        ("[1,2]", "[2,1]"),
        ("[[1],2]", "[1,[2]]"),
        ("[]", "{}"),
        (r#""1""#, "1"),
        ("null", "false"),
        ("1e400", "1e401"),
        ("0.1", "0.10000000000000000001"),
        (r#""\ud800""#, r#""\ufffd""#),
        (r#"{"a":[]}"#, r#"{"a":{}}"#),
        (r#"{"a":"b","c":"d"}"#, r#"{"a":"c","b":"d"}"#),
    ] {
        assert!(!same_value(a, b), "{a} vs {b}");
    }
}

#[test]
fn nesting_depth_never_decides_equality() {
    let deep = |n: usize, inner: &str| format!("{}{inner}{}", "[".repeat(n), "]".repeat(n));
    let a = deep(50_000, "1");
    let b = deep(50_000, " 1.0 ");
    assert!(same_value(&a, &b));
    assert!(!same_value(&a, &deep(50_000, "2")));
    assert!(!same_value(&a, &deep(49_999, "1")));
    let objects =
        |inner: &str| format!("{}{inner}{}", r#"{"k":"#.repeat(20_000), "}".repeat(20_000));
    assert!(same_value(&objects("true"), &objects(" true")));
    assert_eq!(check(&a), Ok(()));
    assert_eq!(check(&objects("true")), Ok(()));
}

#[test]
fn duplicate_member_names_are_refused_with_the_objects_pointer() {
    assert_eq!(
        check(r#"{"a":{"x":[1,{"k":1,"k":2}]}}"#),
        Err(PayloadError::DuplicateKey {
            pointer: "/a/x/1".into(),
            name: "k".into()
        })
    );
    // Escapes are decoded before names are compared.
    assert!(matches!(
        check(r#"{"é":1,"\u00e9":2}"#),
        Err(PayloadError::DuplicateKey { .. })
    ));
    assert!(matches!(
        check(r#"{"a/b":{"c~d":1,"c~d":1}}"#),
        Err(PayloadError::DuplicateKey { pointer, .. }) if pointer == "/a~1b"
    ));
    assert_eq!(check(r#"[{"k":1},{"k":1}]"#), Ok(()));
    assert!(digest(r#"{"k":1,"k":1}"#).is_err());
}

#[test]
fn exponents_beyond_exact_comparison_are_refused() {
    assert!(matches!(
        check(&format!("[1,{{\"n\":1e{}}}]", "9".repeat(40))),
        Err(PayloadError::ExponentOutOfRange { pointer }) if pointer == "/1/n"
    ));
    assert_eq!(check("1e-99999999999999999999999999999"), Ok(()));
    assert_eq!(check(&format!("1e{}1", "0".repeat(100))), Ok(()));
}

/// Found by the `ingest_body` fuzz target: serde_json reads a 30-digit
/// integer as an `f64` and prints it rounded, so a comparison through
/// serde_json would call these equal; exact decimals do not.
#[test]
fn integers_beyond_f64_precision_are_compared_exactly() {
    let text = r#"{")topic":"x","payload":{"a":0,"dataa":288888888888888888888888888888}}"#;
    let rounded = serde_json::from_str::<serde_json::Value>(text)
        .expect("json")
        .to_string();
    assert!(!same_value(text, &rounded), "{rounded}");
    assert!(same_value(
        "288888888888888888888888888888",
        "2.88888888888888888888888888888e29"
    ));
}

#[test]
fn nul_lone_surrogates_and_big_numbers_are_values_like_any_other() {
    for text in [
        r#""\u0000""#,
        r#"{"s":"\ud800"}"#,
        r#""\udc00\ud800""#,
        "123456789012345678901234567890.5e-3",
        "-1e400",
    ] {
        assert_eq!(check(text), Ok(()), "{text}");
        assert!(digest(text).is_ok(), "{text}");
    }
    assert!(!same_value(r#""\u0000""#, r#""""#));
}

#[test]
fn malformed_text_is_an_error_never_a_panic() {
    for text in [
        "",
        " ",
        "[",
        "]",
        "{",
        "}",
        "[1,]",
        "{,}",
        r#"{"a"}"#,
        r#"{"a":}"#,
        r#"{"a":1,}"#,
        "01",
        "1.",
        "1e",
        "-",
        "+1",
        ".5",
        "tru",
        "nul",
        r#""\x""#,
        r#""\u12""#,
        "\"a",
        "[1 2]",
        "{} {}",
        "\"\u{1}\"",
        r#"{1:2}"#,
        "[1}",
        "{\"a\":1]",
    ] {
        assert!(check(text).is_err(), "{text:?}");
        assert!(digest(text).is_err(), "{text:?}");
        assert!(same_value(text, text));
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        (-1e6f64..1e6).prop_map(serde_json::Value::from),
        "[a-zé\"\\\\/\\n😀]{0,6}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("[a-c]{1,2}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Members in reverse order and every non-ASCII character escaped.
fn reordered(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(m) => {
            let members: Vec<String> = m
                .iter()
                .rev()
                .map(|(k, v)| format!("{} : {}", escaped(k), reordered(v)))
                .collect();
            format!("{{ {} }}", members.join(" , "))
        }
        serde_json::Value::Array(a) => {
            let items: Vec<String> = a.iter().map(reordered).collect();
            format!("[\n{}\n]", items.join(",\t"))
        }
        serde_json::Value::String(s) => escaped(s),
        other => other.to_string(),
    }
}

fn escaped(s: &str) -> String {
    let mut out = String::from("\"");
    for unit in s.encode_utf16() {
        match unit {
            0x22 => out.push_str("\\\""),
            0x5c => out.push_str("\\\\"),
            u if !(0x20..=0x7e).contains(&u) => out.push_str(&format!("\\u{u:04x}")),
            u => out.push(char::from(u8::try_from(u).unwrap_or(b'?'))),
        }
    }
    out.push('"');
    out
}

proptest! {
    #[test]
    fn equal_values_have_equal_digests_whatever_their_text(v in json_value()) {
        let compact = v.to_string();
        prop_assert_eq!(check(&compact), Ok(()));
        prop_assert!(same_value(&compact, &reordered(&v)), "{} vs {}", compact, reordered(&v));
        prop_assert!(same_value(&compact, &serde_json::to_string_pretty(&v).unwrap_or_default()));
    }

    #[test]
    fn digests_agree_with_serde_json_equality(a in json_value(), b in json_value()) {
        // serde_json tells 1 from 1.0; the generated floats are never integral
        // in practice, so its equality is the reference here.
        let (ta, tb) = (a.to_string(), b.to_string());
        prop_assert_eq!(same_value(&ta, &tb), a == b, "{} vs {}", ta, tb);
    }

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,64}") {
        let _ = check(&s);
        let _ = digest(&s);
    }
}
