//! A webhook's `tls:` (contract §10): the client certificate and key read
//! from their files and checked as a pair — both PEM, the key the
//! certificate's own, the certificate valid today — and an optional CA
//! file trusted for that receiver instead of the public roots.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rustls::pki_types::pem::{PemObject as _, SectionKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_saphyr::Spanned;

use super::Compiler;
use super::files::digest;
use crate::domain::Secret;
use crate::policy::raw::RawClientTls;
use crate::policy::reach::{ClientTls, Identity};

impl Compiler<'_> {
    /// `tls:` under `path`, or `None` after recording what is wrong.
    pub(super) fn client_tls(
        &mut self,
        raw: &Spanned<RawClientTls>,
        path: &str,
    ) -> Option<Arc<ClientTls>> {
        let t = &raw.value;
        let before = self.errors.len();
        let identity = match (&t.client_cert_file, &t.client_key_file) {
            (Some(cert), Some(key)) => {
                let cp = format!("{path}.client_cert_file");
                let kp = format!("{path}.client_key_file");
                let cert_pem = self.read_file(cert, &cp);
                let key_pem = self.read_file(key, &kp);
                match (cert_pem, key_pem) {
                    (Some(c), Some(k)) => match check_pair(&c, &k, Utc::now()) {
                        Ok(not_after) => Some(Identity {
                            cert_pem: c,
                            key_pem: Secret::new(k),
                            not_after,
                        }),
                        Err(Pair::Cert(msg)) => {
                            self.error(cp, cert.referenced, msg);
                            None
                        }
                        Err(Pair::Key(msg)) => {
                            self.error(kp, key.referenced, msg);
                            None
                        }
                    },
                    _ => None,
                }
            }
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                self.error(
                    path,
                    raw.referenced,
                    "client_cert_file and client_key_file go together: give both or neither",
                );
                None
            }
        };
        let ca_pem = t.ca_file.as_ref().and_then(|ca| {
            let p = format!("{path}.ca_file");
            let text = self.read_file(ca, &p)?;
            match check_roots(&text) {
                Ok(()) => Some(text),
                Err(msg) => {
                    self.error(p, ca.referenced, msg);
                    None
                }
            }
        });
        if identity.is_none() && ca_pem.is_none() && self.errors.len() == before {
            self.error(
                path,
                raw.referenced,
                "tls needs client_cert_file and client_key_file, ca_file, or both",
            );
        }
        if self.errors.len() > before {
            return None;
        }
        let (cert, key) = identity
            .as_ref()
            .map_or(("", ""), |id| (id.cert_pem.as_str(), id.key_pem.expose()));
        let ca = ca_pem.as_deref().unwrap_or("");
        let fingerprint = digest(&[cert.as_bytes(), key.as_bytes(), ca.as_bytes()]);
        Some(Arc::new(ClientTls {
            identity,
            ca_pem,
            fingerprint,
        }))
    }
}

/// Which file of a pair a problem is in.
#[derive(Debug, PartialEq, Eq)]
enum Pair {
    Cert(String),
    Key(String),
}

/// The leaf's `notAfter` when `cert` (PEM, leaf first) and `key` (PEM) are
/// a pair valid at `now`; otherwise what is wrong and with which file.
fn check_pair(cert: &str, key: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, Pair> {
    // The sender hands both files to the TLS client as they are: a stray
    // section or a second key would change what it presents.
    let certs = sections(cert).map_err(Pair::Cert)?;
    if let Some(kind) = certs.iter().find(|k| **k != SectionKind::Certificate) {
        return Err(Pair::Cert(format!(
            "the certificate file holds a {kind:?} section; only certificates may be in it"
        )));
    }
    let keys = sections(key).map_err(Pair::Key)?;
    let is_key = |k: &SectionKind| {
        matches!(
            k,
            SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey
        )
    };
    if keys.len() != 1 || !is_key(&keys[0]) {
        return Err(Pair::Key(format!(
            "the key file must hold exactly one private key and nothing else; it holds {} PEM section(s)",
            keys.len()
        )));
    }
    let chain = certificates(cert).map_err(Pair::Cert)?;
    let (not_before, not_after) = validity(&chain[0]).map_err(Pair::Cert)?;
    if now > not_after {
        return Err(Pair::Cert(format!(
            "the client certificate expired on {}",
            not_after.format("%Y-%m-%d %H:%M:%S UTC")
        )));
    }
    if now < not_before {
        return Err(Pair::Cert(format!(
            "the client certificate is not valid before {}",
            not_before.format("%Y-%m-%d %H:%M:%S UTC")
        )));
    }
    let der = PrivateKeyDer::from_pem_slice(key.as_bytes())
        .map_err(|_| Pair::Key("no PEM private key (PKCS#8, RSA or EC) in the file".into()))?;
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(der)
        .map_err(|_| Pair::Key("the private key is not an RSA, ECDSA or Ed25519 key".into()))?;
    let pair = rustls::sign::CertifiedKey::new(chain, signing);
    match pair.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(not_after)
        }
        Err(_) => Err(Pair::Key(
            "the private key does not belong to the client certificate".into(),
        )),
    }
}

/// The kinds of every PEM section of a text.
fn sections(pem: &str) -> Result<Vec<SectionKind>, String> {
    <(SectionKind, Vec<u8>)>::pem_slice_iter(pem.as_bytes())
        .map(|s| s.map(|(kind, _)| kind))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM file: {e}"))
}

/// Every certificate of a PEM text, at least one.
fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate file: {e}"))?;
    if chain.is_empty() {
        return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) in the file".into());
    }
    Ok(chain)
}

/// A certificate's `notBefore` and `notAfter`.
fn validity(der: &CertificateDer<'_>) -> Result<(DateTime<Utc>, DateTime<Utc>), String> {
    use x509_cert::der::Decode as _;
    let cert = x509_cert::Certificate::from_der(der.as_ref())
        .map_err(|e| format!("the certificate cannot be read: {e}"))?;
    let v = &cert.tbs_certificate.validity;
    let time = |t: x509_cert::time::Time| {
        let d = t.to_unix_duration();
        DateTime::<Utc>::from_timestamp(i64::try_from(d.as_secs()).unwrap_or(i64::MAX), 0)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    };
    Ok((time(v.not_before), time(v.not_after)))
}

/// Whether a `ca_file`'s PEM holds certificates usable as trust anchors.
fn check_roots(pem: &str) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(pem)? {
        roots
            .add(cert)
            .map_err(|e| format!("a certificate cannot be a trusted CA: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use chrono::Datelike as _;

    /// A self-signed certificate valid from yesterday for `days` days, and its key.
    fn pair(days: i64) -> (String, String) {
        let ymd = |d: DateTime<Utc>| rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8);
        let mut params = rcgen::CertificateParams::new(vec!["client.test".into()]).unwrap();
        params.not_before = ymd(Utc::now() - chrono::Duration::days(1));
        params.not_after = ymd(Utc::now() + chrono::Duration::days(days));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_matching_pair_gives_its_expiry() {
        let (cert, key) = pair(30);
        let not_after = check_pair(&cert, &key, Utc::now()).expect("a pair");
        let days = (not_after - Utc::now()).num_days();
        assert!((28..=31).contains(&days), "{days}");
    }

    #[test]
    fn an_expired_certificate_is_refused_with_its_date() {
        let (cert, key) = pair(30);
        let later = Utc::now() + chrono::Duration::days(40);
        match check_pair(&cert, &key, later) {
            Err(Pair::Cert(msg)) => assert!(msg.contains("expired on 20"), "{msg}"),
            other => panic!("{other:?}"),
        }
        let earlier = Utc::now() - chrono::Duration::days(3);
        match check_pair(&cert, &key, earlier) {
            Err(Pair::Cert(msg)) => assert!(msg.contains("not valid before"), "{msg}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let (cert, _) = pair(30);
        let (_, other_key) = pair(30);
        assert_eq!(
            check_pair(&cert, &other_key, Utc::now()),
            Err(Pair::Key(
                "the private key does not belong to the client certificate".into()
            ))
        );
    }

    #[test]
    fn files_that_are_not_pem_are_named() {
        let (cert, key) = pair(30);
        assert!(matches!(
            check_pair("hello", &key, Utc::now()),
            Err(Pair::Cert(_))
        ));
        assert!(matches!(
            check_pair(&cert, "hello", Utc::now()),
            Err(Pair::Key(_))
        ));
        assert!(matches!(
            check_pair(&key, &key, Utc::now()),
            Err(Pair::Cert(_))
        ));
        assert!(check_roots(&cert).is_ok());
        let two_keys = format!("{key}{key}");
        assert!(
            matches!(check_pair(&cert, &two_keys, Utc::now()), Err(Pair::Key(m)) if m.contains("exactly one"))
        );
        let cert_and_key = format!("{cert}{key}");
        assert!(
            matches!(check_pair(&cert_and_key, &key, Utc::now()), Err(Pair::Cert(m)) if m.contains("only certificates"))
        );
        assert!(check_roots("nothing").is_err());
    }
}
