//! `kind: nats`: a durable pull consumer on a JetStream stream. Messages
//! arrive through one continuous pull (a bounded prefetch of `max_batch`);
//! each batch is what has arrived by the time the previous one is stored,
//! so a quiet stream sends each message at once and a busy one in batches.
//! Every message is acknowledged on its own (never `AckAll`: with several
//! engines pulling from one consumer, that would acknowledge another
//! engine's messages before they are stored). A message not acknowledged
//! within `ack_wait` is redelivered; its event id makes it a duplicate.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::AckPolicy, consumer::pull};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{Lag, Message, Pipeline, Status};
use crate::policy::sources::{NatsCredentials, NatsSource, Source};

/// Redelivery of a message not acknowledged this long after it was sent
/// (an engine that died mid-batch).
const ACK_WAIT: Duration = Duration::from_secs(30);

pub(super) async fn run(
    source: &Source,
    cfg: &NatsSource,
    status: &Arc<Status>,
    pipeline: &Pipeline,
    cancel: &CancellationToken,
) -> Result<(), String> {
    let client = tokio::select! {
        c = connect(cfg, status) => c?,
        () = cancel.cancelled() => return Ok(()),
    };
    let js = jetstream::new(client);
    let stream = js
        .get_stream(&cfg.stream)
        .await
        .map_err(|e| format!("JetStream stream {:?}: {e}", cfg.stream))?;
    // One filter goes in `filter_subject`: servers before 2.10 ignore the list form.
    let (filter_subject, filter_subjects) = match cfg.subjects.as_slice() {
        [one] => (one.clone(), Vec::new()),
        many => (String::new(), many.to_vec()),
    };
    let config = pull::Config {
        durable_name: Some(cfg.consumer.clone()),
        filter_subject,
        filter_subjects,
        ack_policy: AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        ..Default::default()
    };
    let mut consumer: jetstream::consumer::Consumer<pull::Config> = stream
        .get_or_create_consumer(&cfg.consumer, config.clone())
        .await
        .map_err(|e| {
            format!(
                "JetStream consumer {:?} on stream {:?}: {e}",
                cfg.consumer, cfg.stream
            )
        })?;
    // A durable consumer made earlier with other subjects (a reload changed
    // `subjects`): its filter is updated, or the source says why it cannot
    // be, rather than consume subjects the policy no longer names.
    let existing = &consumer.cached_info().config;
    if existing.filter_subject != config.filter_subject
        || existing.filter_subjects != config.filter_subjects
    {
        let was = if existing.filter_subjects.is_empty() {
            vec![existing.filter_subject.clone()]
        } else {
            existing.filter_subjects.clone()
        };
        let refuse = |why: String| {
            format!(
                "JetStream consumer {:?} exists with subjects {was:?}, not {:?}, and cannot be updated ({why}): delete it or name another consumer",
                cfg.consumer, cfg.subjects
            )
        };
        consumer = stream
            .update_consumer(config.clone())
            .await
            .map_err(|e| refuse(e.to_string()))?;
        // Servers before 2.10 answer the update without changing the filter.
        let now = &consumer.cached_info().config;
        if now.filter_subject != config.filter_subject
            || now.filter_subjects != config.filter_subjects
        {
            return Err(refuse("the server kept the old filter".into()));
        }
        tracing::info!(source = %source.id, consumer = %cfg.consumer, ?was, now = ?cfg.subjects, "JetStream consumer's subjects updated");
    }
    status.set_connected(true);
    let lag = tokio::spawn(watch_lag(consumer.clone(), status.clone(), cancel.clone()));
    let result = consume(source, cfg, &consumer, status, pipeline, cancel).await;
    lag.abort();
    result
}

async fn connect(cfg: &NatsSource, status: &Arc<Status>) -> Result<async_nats::Client, String> {
    let watcher = status.clone();
    let mut options = async_nats::ConnectOptions::new()
        .name("aion-webhooks")
        .connection_timeout(Duration::from_secs(5))
        .event_callback(move |event| {
            let status = watcher.clone();
            async move {
                match event {
                    async_nats::Event::Connected => status.set_connected(true),
                    async_nats::Event::Disconnected => {
                        status.set_connected(false);
                        status.error("disconnected from the NATS server; reconnecting");
                    }
                    async_nats::Event::ServerError(e) => status.error(format!("NATS server: {e}")),
                    async_nats::Event::ClientError(e) => status.error(format!("NATS client: {e}")),
                    _ => {}
                }
            }
        });
    options = match &cfg.credentials {
        None => options,
        Some(NatsCredentials::UserPassword { user, password }) => {
            options.user_and_password(user.clone(), password.expose().to_owned())
        }
        Some(NatsCredentials::Token(token)) => options.token(token.expose().to_owned()),
        Some(NatsCredentials::CredsFile(path)) => options
            .credentials_file(path)
            .await
            .map_err(|e| format!("NATS credentials file {}: {e}", path.display()))?,
    };
    options.connect(&cfg.url).await.map_err(|e| {
        // The policy refuses userinfo in the URL; shown without it all
        // the same, and async-nats's own text may repeat the address.
        let shown = crate::domain::redact::url_list_origins(&cfg.url);
        format!("connecting to {shown}: {e}")
    })
}

async fn consume(
    source: &Source,
    cfg: &NatsSource,
    consumer: &jetstream::consumer::Consumer<pull::Config>,
    status: &Arc<Status>,
    pipeline: &Pipeline,
    cancel: &CancellationToken,
) -> Result<(), String> {
    let max = source.max_batch as usize;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(max)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .map_err(|e| format!("pulling from consumer {:?}: {e}", cfg.consumer))?;
    let mut batch: Vec<jetstream::Message> = Vec::with_capacity(max);
    loop {
        let first = tokio::select! {
            m = messages.next() => m,
            () = cancel.cancelled() => return Ok(()),
        };
        match first {
            None => return Err("the pull subscription ended".into()),
            Some(Err(e)) => return Err(format!("pulling messages: {e}")),
            Some(Ok(m)) => batch.push(m),
        }
        // Whatever else has arrived already joins this batch.
        while batch.len() < max {
            match futures::FutureExt::now_or_never(messages.next()) {
                Some(Some(Ok(m))) => batch.push(m),
                Some(Some(Err(e))) => {
                    status.error(format!("pulling messages: {e}"));
                    break;
                }
                _ => break,
            }
        }
        let owned: Vec<Message> = batch.iter().map(|m| owned(cfg, m)).collect();
        if pipeline
            .store_batch(source, status, &owned, cancel)
            .await
            .is_err()
        {
            // Stopped before the batch was stored: not acknowledged, redelivered later.
            return Ok(());
        }
        for m in batch.drain(..) {
            if let Err(e) = m.ack().await {
                status.error(format!("acknowledging a message: {e}"));
            }
        }
    }
}

fn owned(cfg: &NatsSource, m: &jetstream::Message) -> Message {
    let sequence = m.info().map(|i| i.stream_sequence).unwrap_or(0);
    Message {
        value: m.payload.to_vec(),
        topic: m.subject.to_string(),
        key: None,
        position: crate::domain::derived_id::nats_id(&cfg.stream, sequence),
        msg_id: m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_owned()),
        kafka: None,
    }
}

/// Pending and unacknowledged messages, every 2 s.
async fn watch_lag(
    mut consumer: jetstream::consumer::Consumer<pull::Config>,
    status: Arc<Status>,
    cancel: CancellationToken,
) {
    loop {
        match consumer.info().await {
            Ok(info) => status.set_lag(Lag::Nats {
                pending: info.num_pending,
                ack_pending: info.num_ack_pending as u64,
            }),
            Err(e) => status.error(format!("reading the consumer's state: {e}")),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            () = cancel.cancelled() => return,
        }
    }
}
