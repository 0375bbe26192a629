//! The OpenAPI 3.1 description of the API (contract §11), derived from the
//! handlers' own annotations and body types, served at
//! `GET /v1/openapi.json` (no auth: it holds no data) and committed as
//! `docs/openapi.json` (a test fails when the two differ).

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::code::ErrorCode;
use super::events::EventView;
use super::views::*;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "aion-webhooks",
        description = "A durable, signed webhook delivery engine: producers publish events, every matching webhook gets them signed and at least once; external systems post signed commands. Errors are `{\"error\": {\"code\", \"message\", \"field\"?}}` with a stable `code`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        super::events::post_events,
        super::events::get_event,
        super::admin::list_deliveries,
        super::admin::get_delivery,
        super::admin::replay_delivery,
        super::replay::bulk_replay,
        super::admin::list_webhooks,
        super::endpoints::disable_webhook,
        super::endpoints::enable_webhook,
        super::test_send::test_webhook,
        super::admin::list_audit,
        super::sources::list_sources,
        super::sources::list_rejects,
        super::policy::get_policy,
        super::policy::reload_policy,
        super::inbound::post_inbound,
        openapi_json,
        super::health::healthz,
        super::health::readyz,
        super::health::metrics,
    ),
    components(schemas(ErrorCode, ErrorBody, ErrorDetail, ViolationView, EventView)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "events", description = "Publishing and reading events (role `publisher` to publish, `admin` to read)"),
        (name = "deliveries", description = "Deliveries, their attempts, and replay (role `admin`)"),
        (name = "webhooks", description = "Webhooks of the policy and their runtime state (role `admin`)"),
        (name = "policy", description = "The policy in force and reloads (role `admin`)"),
        (name = "sources", description = "Event-bus sources (role `admin`)"),
        (name = "audit", description = "The audit log (role `admin`)"),
        (name = "inbound", description = "Signed commands from external systems"),
        (name = "probes", description = "Health, readiness, metrics and this description (no auth)"),
    ),
)]
struct ApiDoc;

/// `Authorization: Bearer` with an API key from the policy, or a JWT.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut key = Http::new(HttpAuthScheme::Bearer);
        key.bearer_format = Some("API key".into());
        key.description = Some(
            "An API key from the policy's `auth.api_keys` (its SHA-256 is what the policy holds)"
                .into(),
        );
        components.add_security_scheme("api_key", SecurityScheme::Http(key));
        let mut jwt = Http::new(HttpAuthScheme::Bearer);
        jwt.bearer_format = Some("JWT".into());
        jwt.description = Some(
            "A JWT checked against the policy's `auth.jwt` (issuer, audience, key; roles from its claims)"
                .into(),
        );
        components.add_security_scheme("jwt", SecurityScheme::Http(jwt));
    }
}

/// The description, as served and committed (pretty JSON, newline at end).
pub fn document() -> String {
    let mut value =
        serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI description serializes");
    empty_query_values_are_absent(&mut value);
    let mut text = serde_json::to_string_pretty(&value).expect("JSON");
    text.push('\n');
    text
}

/// The engine reads an empty query value (`?cursor=`) as an absent one, as
/// forms and scripts send them: each optional query parameter's schema also
/// admits the empty string (and none admits null, which a query cannot say).
fn empty_query_values_are_absent(document: &mut serde_json::Value) {
    let Some(paths) = document.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for operation in paths.values_mut().filter_map(|p| p.as_object_mut()) {
        for op in operation.values_mut() {
            // `get_mut`, not indexing: indexing would insert a null.
            let Some(params) = op.get_mut("parameters").and_then(|p| p.as_array_mut()) else {
                continue;
            };
            for param in params {
                if param["in"] == "query" && param["required"] != true {
                    let mut schema = param["schema"].take();
                    // `Option<T>` made it nullable; a query has no null.
                    if let Some(types) = schema["type"].as_array() {
                        let types: Vec<_> =
                            types.iter().filter(|t| *t != "null").cloned().collect();
                        schema["type"] = types.first().cloned().unwrap_or_default();
                    }
                    param["schema"] = serde_json::json!({
                        "anyOf": [schema, { "type": "string", "maxLength": 0 }]
                    });
                }
            }
        }
    }
}

#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "probes",
    summary = "This description",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = Object)),
    security(())
)]
pub async fn openapi_json() -> impl IntoResponse {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.get_or_init(document).as_str(),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_committed_description_is_what_the_code_produces() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
        let produced = super::document();
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &produced).expect("write docs/openapi.json");
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == produced,
            "docs/openapi.json differs from what the code produces: run `UPDATE_OPENAPI=1 cargo test --lib openapi` and commit it"
        );
    }
}
