//! A `kind: nats` source entry: its URL (no userinfo: credentials go
//! under `credentials:`), stream, durable consumer, subjects and
//! credentials.

use super::super::super::raw::{RawNatsCredentials, RawSource};
use super::super::super::sources::{NatsCredentials, NatsSource};
use super::super::Compiler;
use crate::domain::Secret;
use crate::domain::redact::{has_userinfo, url_list_origins};

impl Compiler<'_> {
    pub(super) fn nats(&mut self, s: &RawSource, path: &str) -> Option<NatsSource> {
        let url = self.required(&s.url, path, "url", &s.kind).and_then(|u| {
            let ok = ["nats://", "tls://", "ws://", "wss://"]
                .iter()
                .any(|p| u.starts_with(p));
            let at = s
                .url
                .as_ref()
                .map(|v| v.referenced)
                .unwrap_or(s.kind.referenced);
            // The URL is shown by `GET /v1/sources` and in errors: a
            // credential in it would be too. Never echo it in this message.
            if has_userinfo(&u) {
                self.error(
                    format!("{path}.url"),
                    at,
                    "the URL must not hold a user, password or token: put them under `credentials:` (user and password, token, or creds_file)",
                );
                return None;
            }
            if !ok {
                self.error(
                    format!("{path}.url"),
                    at,
                    format!(
                        "{:?} is not a NATS URL (nats://host:port or tls://host:port)",
                        url_list_origins(&u)
                    ),
                );
                return None;
            }
            Some(u)
        });
        let stream = self.required(&s.stream, path, "stream", &s.kind);
        let consumer = self.required(&s.consumer, path, "consumer", &s.kind);
        for (name, value, at) in [
            ("stream", &stream, &s.stream),
            ("consumer", &consumer, &s.consumer),
        ] {
            if let (Some(v), Some(at)) = (value, at)
                && !v
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                self.error(
                    format!("{path}.{name}"),
                    at.referenced,
                    format!("{v:?}: a JetStream {name} name is letters, digits, `-` and `_`"),
                );
            }
        }
        let subjects = self.list(&s.subjects, path, "subjects", &s.kind, false);
        let credentials = match &s.credentials {
            None => Some(None),
            Some(c) => self
                .nats_credentials(&c.value, c.referenced, path)
                .map(Some),
        };
        Some(NatsSource {
            url: url?,
            stream: stream?,
            consumer: consumer?,
            subjects: subjects?,
            credentials: credentials?,
        })
    }

    fn nats_credentials(
        &mut self,
        c: &RawNatsCredentials,
        owner: serde_saphyr::Location,
        path: &str,
    ) -> Option<NatsCredentials> {
        let p = format!("{path}.credentials");
        match (&c.user, &c.password, &c.token, &c.creds_file) {
            (Some(u), Some(pw), None, None) => {
                let user = self.string(u, &format!("{p}.user"));
                let password = self.string(pw, &format!("{p}.password"));
                Some(NatsCredentials::UserPassword {
                    user: user?,
                    password: Secret::new(password?),
                })
            }
            (None, None, Some(t), None) => Some(NatsCredentials::Token(Secret::new(
                self.string(t, &format!("{p}.token"))?,
            ))),
            (None, None, None, Some(f)) => {
                let name = self.string(f, &format!("{p}.creds_file"))?;
                Some(NatsCredentials::CredsFile(self.base_dir.join(name)))
            }
            _ => {
                self.error(
                    p,
                    owner,
                    "set `user` and `password`, or `token`, or `creds_file`",
                );
                None
            }
        }
    }
}
