//! The peers the delivery-reach tests talk to, all real and on loopback: a
//! test PKI (a CA, a server and a client certificate, made with rcgen), an
//! HTTP or HTTPS receiver that can demand a client certificate and records
//! each request's peer address, a forward proxy (`CONNECT` and absolute-form)
//! that connects onwards from 127.0.0.2, and an OAuth2 token endpoint.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use chrono::Datelike as _;
use http_body_util::Full;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A CA and a server certificate for `localhost` and 127.0.0.1 it signed,
/// as PEM files in a temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
    server: (CertificateDer<'static>, PrivateKeyDer<'static>),
}

impl Pki {
    pub fn new() -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "aion test CA");
        let ca = ca.self_signed(&ca_key).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let mut sp = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = sp.signed_by(&server_key, &ca, &ca_key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        let key = PrivatePkcs8KeyDer::from(server_key.serialize_der()).into();
        Self {
            dir,
            ca,
            ca_key,
            server: (server.der().clone(), key),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A client certificate signed by the CA, valid for `days` more days,
    /// written as `NAME.crt` and `NAME.key`.
    pub fn client(&self, name: &str, days: i64) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let ymd = |days_from_now: i64| {
            let d = chrono::Utc::now() + chrono::Duration::days(days_from_now);
            rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8)
        };
        p.not_before = ymd(-1);
        p.not_after = ymd(days);
        let cert = p.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        std::fs::write(self.path(&format!("{name}.crt")), cert.pem()).unwrap();
        std::fs::write(self.path(&format!("{name}.key")), key.serialize_pem()).unwrap();
    }

    /// The DER of client `name`'s certificate as written.
    pub fn client_der(&self, name: &str) -> Vec<u8> {
        use rustls::pki_types::pem::PemObject as _;
        CertificateDer::from_pem_file(self.path(&format!("{name}.crt")))
            .unwrap()
            .as_ref()
            .to_vec()
    }

    /// `tls:` for a webhook presenting client `name` and trusting the CA.
    pub fn tls_yaml(&self, name: &str) -> String {
        format!(
            "tls: {{ client_cert_file: {}, client_key_file: {}, ca_file: {} }}",
            self.path(&format!("{name}.crt")).display(),
            self.path(&format!("{name}.key")).display(),
            self.path("ca.pem").display()
        )
    }

    /// A server config demanding a client certificate from this CA.
    fn server_config(&self, require_client: bool) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if require_client {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.ca.der().clone()).unwrap();
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder
            .with_single_cert(vec![self.server.0.clone()], self.server.1.clone_key())
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// What a [`Server`] saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub peer: SocketAddr,
    pub authorization: Option<String>,
    /// The client certificate (DER) the TLS connection presented.
    pub client_cert: Option<Vec<u8>>,
}

/// Decides a [`Server`]'s status from the request's `Authorization`.
pub type Answer = Arc<dyn Fn(Option<&str>) -> u16 + Send + Sync>;

/// A loopback receiver: plain HTTP, or HTTPS with the PKI's server
/// certificate (demanding a client certificate if asked).
pub struct Server {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// TLS handshakes that failed.
    pub refused: Arc<AtomicUsize>,
}

impl Server {
    pub async fn http(answer: Answer) -> Self {
        Self::start(None, answer).await
    }

    pub async fn https(pki: &Pki, require_client: bool) -> Self {
        Self::start(Some(pki.server_config(require_client)), Arc::new(|_| 200)).await
    }

    async fn start(tls: Option<Arc<rustls::ServerConfig>>, answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{}/hook", addr.port());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(AtomicUsize::new(0));
        let (s, r) = (seen.clone(), refused.clone());
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let (s, r, answer, acceptor) =
                    (s.clone(), r.clone(), answer.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let service = |client_cert: Option<Vec<u8>>| {
                        hyper::service::service_fn(
                            move |req: hyper::Request<hyper::body::Incoming>| {
                                let authorization = req
                                    .headers()
                                    .get("authorization")
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_owned);
                                let status = answer(authorization.as_deref());
                                s.lock().unwrap().push(Seen {
                                    peer,
                                    authorization,
                                    client_cert: client_cert.clone(),
                                });
                                let response = hyper::Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::from_static(b"ok")))
                                    .unwrap();
                                async move { Ok::<_, Infallible>(response) }
                            },
                        )
                    };
                    let http = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        None => {
                            let io = hyper_util::rt::TokioIo::new(stream);
                            let _ = http.serve_connection(io, service(None)).await;
                        }
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(tls) => {
                                let cert = tls
                                    .get_ref()
                                    .1
                                    .peer_certificates()
                                    .and_then(|c| c.first())
                                    .map(|c| c.as_ref().to_vec());
                                let io = hyper_util::rt::TokioIo::new(tls);
                                // A client without a certificate is refused
                                // here under TLS 1.3 (after its handshake).
                                if http.serve_connection(io, service(cert)).await.is_err() {
                                    r.fetch_add(1, Ordering::SeqCst);
                                }
                            }
                            Err(_) => {
                                r.fetch_add(1, Ordering::SeqCst);
                            }
                        },
                    }
                });
            }
        });
        Self { url, seen, refused }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A forward proxy: `CONNECT host:port` tunnels, an absolute-form request
/// is relayed as it is; either way the onward connection leaves from
/// 127.0.0.2, so a receiver can tell the proxy from the engine.
pub struct Proxy {
    pub addr: SocketAddr,
    /// Each connection's first request line and `Proxy-Authorization`.
    pub seen: Log,
}

impl Proxy {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = relay(client, s).await;
                });
            }
        });
        Self { addr, seen }
    }

    pub fn seen(&self) -> Vec<(String, Option<String>)> {
        self.seen.lock().unwrap().clone()
    }
}

type Log = Arc<Mutex<Vec<(String, Option<String>)>>>;

async fn relay(mut client: TcpStream, seen: Log) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte).await? == 0 || head.len() > 16 * 1024 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let line = text.lines().next().unwrap_or_default().to_owned();
    let auth = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("proxy-authorization: ")
                .or_else(|| l.strip_prefix("Proxy-Authorization: "))
        })
        .map(str::to_owned);
    seen.lock().unwrap().push((line.clone(), auth));
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let host_port = if method == "CONNECT" {
        target.to_owned()
    } else {
        let url = url::Url::parse(target).map_err(std::io::Error::other)?;
        format!(
            "{}:{}",
            url.host_str().unwrap_or(""),
            url.port_or_known_default().unwrap_or(80)
        )
    };
    let to = tokio::net::lookup_host(&host_port)
        .await?
        .find(|a| a.is_ipv4());
    let Some(to) = to else { return Ok(()) };
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind("127.0.0.2:0".parse().unwrap())?;
    let mut upstream = socket.connect(to).await?;
    if method == "CONNECT" {
        client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
    } else {
        upstream.write_all(&head).await?;
    }
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

/// How the token endpoint answers.
#[derive(Debug, Clone)]
pub enum TokenMode {
    /// Tokens `tok-1`, `tok-2`, … living this long.
    Issue(Duration),
    /// This status and an RFC 6749 error body.
    Fail(u16),
}

/// An OAuth2 token endpoint (client credentials) that counts its requests
/// and checks the client's Basic credentials.
pub struct TokenEndpoint {
    pub url: String,
    pub fetches: Arc<AtomicUsize>,
    pub mode: Arc<Mutex<TokenMode>>,
    /// Each request's form body.
    pub forms: Arc<Mutex<Vec<String>>>,
}

impl TokenEndpoint {
    pub async fn start(client_id: &str, secret: &str) -> Self {
        use base64::Engine as _;
        let fetches = Arc::new(AtomicUsize::new(0));
        let mode = Arc::new(Mutex::new(TokenMode::Issue(Duration::from_secs(3600))));
        let forms = Arc::new(Mutex::new(Vec::new()));
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"))
        );
        let (f, m, fo) = (fetches.clone(), mode.clone(), forms.clone());
        let app = axum::Router::new().route(
            "/oauth/token",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let (f, m, fo, expected) = (f.clone(), m.clone(), fo.clone(), expected.clone());
                async move {
                    // Slow enough that concurrent sends overlap one fetch.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let n = f.fetch_add(1, Ordering::SeqCst) + 1;
                    fo.lock().unwrap().push(body);
                    let ok_client = headers.get("authorization").and_then(|v| v.to_str().ok())
                        == Some(expected.as_str());
                    let mode = m.lock().unwrap().clone();
                    let (status, json) = match mode {
                        _ if !ok_client => (401, serde_json::json!({"error": "invalid_client"})),
                        TokenMode::Fail(status) => (status, serde_json::json!({"error": "temporarily_unavailable"})),
                        TokenMode::Issue(life) => (
                            200,
                            serde_json::json!({"access_token": format!("tok-{n}"), "token_type": "Bearer", "expires_in": life.as_secs_f64()}),
                        ),
                    };
                    (axum::http::StatusCode::from_u16(status).unwrap(), axum::Json(json))
                }
            }),
        );
        let base = crate::support::serve_loopback(app).await;
        Self {
            url: format!("{}/oauth/token", base.trim_end_matches("/hook")),
            fetches,
            mode,
            forms,
        }
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}
