//! `POST /v1/webhooks/{id}/test` (contract §10): a signed example event of
//! topic `aion.webhooks.test` for one webhook, sent through its real path —
//! the queue, its proxy, TLS, OAuth2 and headers — and answered with the
//! first attempt's outcome. The delivery is stored like any other, and the
//! request is audited.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::extract::{ApiPath, Caller, authorize};
use super::views::TestSendView;
use super::{ApiError, AppState, ErrorCode};
use crate::audit::Outcome;
use crate::domain::DeliveryId;
use crate::ingest::{EventSource, IngestFailure, store_events, test_event};
use crate::rbac::Action;
use crate::store::{DeliveryFilter, EndpointStatus};

/// How often the first attempt is looked for.
const POLL: Duration = Duration::from_millis(25);
/// How long past the webhook's timeout the answer waits for it.
const WAIT_BEYOND_TIMEOUT: Duration = Duration::from_secs(10);

#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/test",
    tag = "webhooks",
    summary = "Send a test event to one webhook",
    description = "Stores a signed event of topic `aion.webhooks.test` for this webhook alone and sends it through the webhook's real path (queue, proxy, TLS, OAuth2, headers), then answers with the first attempt's outcome. The delivery is a normal one: retried on failure, listed, replayable. Audited.",
    params(("id" = String, Path, description = "The webhook id")),
    responses(
        (status = 200, description = "The first attempt finished: `succeeded` or `failed`", body = TestSendView),
        (status = 202, description = "Stored, but no attempt finished within the webhook's timeout plus 10 s (throttled, rate-limited or at its concurrency limit): `pending`", body = TestSendView),
        (status = 401, description = "Missing or invalid credentials (`unauthorized`)", body = super::views::ErrorBody),
        (status = 403, description = "The caller's roles do not allow this (`forbidden`; audited)", body = super::views::ErrorBody),
        (status = 404, description = "No such webhook (`not_found`)", body = super::views::ErrorBody),
        (status = 409, description = "The webhook is disabled, in the policy or at runtime (`webhook_disabled`): a test would not be sent", body = super::views::ErrorBody),
        (status = 503, description = "The database is unavailable; retry later (`unavailable`)", body = super::views::ErrorBody),
    ),
    security(("api_key" = []), ("jwt" = []))
)]
pub async fn test_webhook(
    State(state): State<AppState>,
    principal: Caller,
    ApiPath(id): ApiPath,
) -> Result<(StatusCode, Json<TestSendView>), ApiError> {
    authorize(&state, &principal, Action::TestWebhook).await?;
    let policy = state.policy.load_full();
    let Some(webhook) = policy.webhook(&id) else {
        return Err(ApiError::NotFound(format!(
            "no webhook {:?} in the policy in force",
            id.chars().take(64).collect::<String>()
        )));
    };
    let disabled = |how: &str| ApiError::Conflict {
        code: ErrorCode::WebhookDisabled,
        message: format!("webhook {id} is disabled {how}; a test would not be sent"),
    };
    if !webhook.enabled {
        return Err(disabled("in the policy (enabled: false)"));
    }
    let runtime = state.store.endpoint_states().await?;
    if runtime
        .get(id.as_str())
        .is_some_and(|r| r.status == EndpointStatus::Disabled)
    {
        return Err(disabled("at runtime (enable it first)"));
    }
    let now = chrono::Utc::now();
    let event = test_event(&id, now);
    let event_id = event.id.clone();
    store_events(&state.ingestor, vec![event], now, EventSource::Engine)
        .await
        .map_err(|e| match e {
            IngestFailure::Store(s) => ApiError::from(s),
            // A fresh id on an engine topic: nothing else can go wrong.
            other => ApiError::Conflict {
                code: ErrorCode::EventConflict,
                message: other.to_string(),
            },
        })?;
    // Audited once the test delivery exists.
    let entry = principal.audit(now, "test_webhook", Outcome::Applied, Some(id.clone()));
    state
        .store
        .record_audit(&entry.row(), &entry.event(&policy), now)
        .await?;
    let filter = DeliveryFilter {
        event_id: Some(event_id),
        webhook_id: Some(id.clone()),
        limit: 1,
        ..DeliveryFilter::default()
    };
    let delivery = state
        .store
        .list_deliveries(&filter)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::NotFound(format!("the test delivery to {id} was not stored")))?;
    let deadline = tokio::time::Instant::now() + webhook.timeout + WAIT_BEYOND_TIMEOUT;
    let delivery_id = DeliveryId::from_uuid(delivery.id).to_string();
    loop {
        if let Some((_, attempts)) = state.store.get_delivery(delivery.id).await?
            && let Some(first) = attempts.into_iter().min_by_key(|a| a.attempt)
        {
            let view = TestSendView {
                delivery_id,
                outcome: if first.error_kind.is_none() {
                    "succeeded"
                } else {
                    "failed"
                }
                .into(),
                status: first.status_code.and_then(|s| u16::try_from(s).ok()),
                error: first.error,
                error_kind: first.error_kind,
                duration_ms: u64::try_from(first.duration_ms).ok(),
            };
            return Ok((StatusCode::OK, Json(view)));
        }
        if tokio::time::Instant::now() >= deadline {
            let view = TestSendView {
                delivery_id,
                outcome: "pending".into(),
                status: None,
                error: None,
                error_kind: None,
                duration_ms: None,
            };
            return Ok((StatusCode::ACCEPTED, Json(view)));
        }
        tokio::time::sleep(POLL).await;
    }
}
