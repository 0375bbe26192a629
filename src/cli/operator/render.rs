//! How the operator commands print an answer: tables padded to their
//! widest cell, one view per kind of answer, every string from outside
//! with its control characters escaped.

use serde_json::{Value, json};

use super::View;
use crate::domain::redact::escape_controls;

/// A value as a cell. Strings come from outside (reject reasons, errors,
/// ids, topics, response bodies): their control characters are escaped so
/// they cannot drive the operator's terminal.
pub(super) fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => escape_controls(s).into_owned(),
        other => escape_controls(&other.to_string()).into_owned(),
    }
}

/// Columns padded to their widest cell.
pub(super) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

pub(super) fn rows(value: &Value, fields: &[&str]) -> Vec<Vec<String>> {
    value["data"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| fields.iter().map(|f| text(&item[*f])).collect())
                .collect()
        })
        .unwrap_or_default()
}

/// The human view of an answer.
pub fn render(view: View, value: &Value) -> String {
    match view {
        View::TestSend => {
            let mut out = String::new();
            let fields = "delivery_id outcome status duration_ms error_kind error";
            for f in fields.split(' ') {
                out.push_str(&format!("{f:<13}{}\n", text(&value[f])));
            }
            out
        }
        View::Deliveries => {
            let fields = [
                "id",
                "webhook_id",
                "topic",
                "status",
                "attempts",
                "last_status_code",
                "last_error",
            ];
            table(
                &[
                    "ID", "WEBHOOK", "TOPIC", "STATUS", "ATTEMPTS", "LAST", "ERROR",
                ],
                &rows(value, &fields),
            )
        }
        View::Delivery => {
            let mut out = String::new();
            for f in [
                "id",
                "event_id",
                "webhook_id",
                "topic",
                "status",
                "attempts",
                "next_attempt_at",
                "last_error",
            ] {
                out.push_str(&format!("{f:<16}{}\n", text(&value[f])));
            }
            let attempts = json!({ "data": value["attempts_detail"] });
            out.push('\n');
            out.push_str(&table(
                &["ATTEMPT", "STARTED", "MS", "STATUS", "ERROR"],
                &rows(
                    &attempts,
                    &[
                        "attempt",
                        "started_at",
                        "duration_ms",
                        "status_code",
                        "error_kind",
                    ],
                ),
            ));
            out
        }
        View::Webhooks => table(
            &[
                "ID",
                "STATE",
                "REASON",
                "PENDING",
                "DEAD",
                "LAST SUCCESS",
                "LAST FAILURE",
                "URL",
            ],
            &rows(
                value,
                &[
                    "id",
                    "state",
                    "state_reason",
                    "pending",
                    "dead",
                    "last_success_at",
                    "last_failure_at",
                    "url",
                ],
            ),
        ),
        View::Sources => table(
            &[
                "ID",
                "KIND",
                "STATE",
                "LAG",
                "CONSUMED",
                "CREATED",
                "DUPLICATES",
                "REJECTS",
                "LAST ERROR",
            ],
            &rows(
                value,
                &[
                    "id",
                    "kind",
                    "state",
                    "lag",
                    "consumed",
                    "events_created",
                    "duplicates",
                    "rejects",
                    "last_error",
                ],
            ),
        ),
        View::Rejects => table(
            &["AT", "POSITION", "BYTES", "REASON"],
            &rows(value, &["at", "position", "value_bytes", "reason"]),
        ),
        View::Policy => {
            let mut out = String::new();
            for f in ["sha256", "loaded_at", "source", "webhooks", "outcome"] {
                if !value[f].is_null() {
                    out.push_str(&format!("{f:<12}{}\n", text(&value[f])));
                }
            }
            if let Some(last) = value.get("last_reload").filter(|l| !l.is_null()) {
                out.push_str(&format!(
                    "{:<12}{} at {}\n",
                    "last reload",
                    text(&last["outcome"]),
                    text(&last["at"])
                ));
                for e in last["errors"].as_array().into_iter().flatten() {
                    out.push_str(&format!("  {}\n", text(e)));
                }
            }
            out
        }
        View::Plain => {
            let mut out = String::new();
            if let Some(map) = value.as_object() {
                for (k, v) in map {
                    out.push_str(&format!("{}: {}\n", escape_controls(k), text(v)));
                }
            }
            out
        }
    }
}
