//! The two connections of a PostgreSQL source, from one URL and one TLS
//! setting: tokio-postgres for SQL (catalog, slot and publication), and
//! pgwire-replication for the replication stream.
//!
//! Both pin the session settings that the text output of values depends on
//! (see `types.rs`): the walsender formats pgoutput's values with its own
//! session's settings, which the startup `options` set.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pgwire_replication::ReplicationConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Socket};

use super::SourceError;
use crate::config::{TlsConfig, TlsMode, redact_url};

/// Settings the value decoders rely on, for both connections.
pub const SESSION_OPTIONS: &str = "-c DateStyle=ISO,MDY -c IntervalStyle=postgres \
    -c extra_float_digits=3 -c TimeZone=UTC -c bytea_output=hex -c lc_monetary=C";

/// What the URL says.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
}

impl Target {
    /// Parses the source URL (already checked by `Config::validate`).
    pub fn parse(url: &str) -> Result<Target, SourceError> {
        let bad =
            |why: &str| SourceError::definite(format!("source.url {}: {why}", redact_url(url)));
        let cfg = tokio_postgres::Config::from_str(url).map_err(|e| bad(&e.to_string()))?;
        let host = match cfg.get_hosts() {
            [tokio_postgres::config::Host::Tcp(h)] => h.clone(),
            [tokio_postgres::config::Host::Unix(p)] => p.display().to_string(),
            _ => return Err(bad("must name exactly one host")),
        };
        Ok(Target {
            host,
            port: cfg.get_ports().first().copied().unwrap_or(5432),
            user: cfg.get_user().ok_or_else(|| bad("no user"))?.to_string(),
            password: cfg
                .get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .unwrap_or_default(),
            database: cfg
                .get_dbname()
                .ok_or_else(|| bad("no database"))?
                .to_string(),
        })
    }

    /// `host:port/database`, for logs and errors.
    pub fn describe(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.database)
    }
}

/// Opens the SQL connection; its driver runs on a spawned task.
/// `section` names the settings a TLS failure points at
/// (`tasks.source.tls`, `tasks.sink.tls`).
pub async fn sql(
    target: &Target,
    tls: &TlsConfig,
    app: &str,
    section: &str,
) -> Result<Client, SourceError> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(&target.host)
        .port(target.port)
        .user(&target.user)
        .password(&target.password)
        .dbname(&target.database)
        .options(SESSION_OPTIONS)
        .application_name(app)
        .connect_timeout(Duration::from_secs(15))
        .keepalives_idle(Duration::from_secs(30));
    let context = format!("connecting to {}", target.describe());
    if tls.mode == TlsMode::Disabled {
        cfg.ssl_mode(tokio_postgres::config::SslMode::Disable);
        let (client, conn) = cfg
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| super::setup::classify(&context, e))?;
        spawn_connection(conn);
        Ok(client)
    } else {
        cfg.ssl_mode(tokio_postgres::config::SslMode::Require);
        let connector = MakeRustls(Arc::new(client_config(tls)?));
        let (client, conn) = cfg.connect(connector).await.map_err(|e| {
            if crate::error::is_tls_failure(&e) {
                // A certificate the settings don't trust won't change by
                // retrying.
                SourceError::definite(format!(
                    "{context}: TLS failed (check [{section}]: mode, ca_file, skip_hostname_check)"
                ))
                .caused_by(e)
            } else {
                super::setup::classify(&context, e)
            }
        })?;
        spawn_connection(conn);
        Ok(client)
    }
}

fn spawn_connection<S, T>(conn: tokio_postgres::Connection<S, T>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "SQL connection ended");
        }
    });
}

/// The replication connection's settings (START_REPLICATION options are
/// added by the caller).
pub fn replication(
    target: &Target,
    tls: &TlsConfig,
    slot: &str,
    publication: &str,
) -> ReplicationConfig {
    let tls = match tls.mode {
        TlsMode::Disabled => pgwire_replication::TlsConfig::disabled(),
        TlsMode::RequiredInsecure => pgwire_replication::TlsConfig::require(),
        TlsMode::Required if tls.skip_hostname_check => {
            pgwire_replication::TlsConfig::verify_ca(tls.ca_file.clone())
        }
        TlsMode::Required => pgwire_replication::TlsConfig::verify_full(tls.ca_file.clone()),
    };
    ReplicationConfig::new(
        target.host.clone(),
        target.user.clone(),
        target.password.clone(),
        target.database.clone(),
        slot,
        publication,
    )
    .with_port(target.port)
    .with_tls(tls)
    .with_options(SESSION_OPTIONS)
}

/// rustls settings for `tls` (mode not `disabled`).
pub(crate) fn client_config(tls: &TlsConfig) -> Result<ClientConfig, SourceError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| SourceError::definite(format!("TLS setup: {e}")))?;
    let mut roots = RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                SourceError::definite(format!("source.tls.ca_file {}: {e}", path.display()))
            })?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    SourceError::definite(format!("source.tls.ca_file {}: {e}", path.display()))
                })?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(SourceError::definite(format!(
                    "source.tls.ca_file {} holds no usable CA certificate",
                    path.display()
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| SourceError::definite(format!("TLS setup: {e}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = match tls.mode {
        TlsMode::RequiredInsecure => Arc::new(Verifier {
            inner: webpki,
            check_chain: false,
        }),
        _ if tls.skip_hostname_check => Arc::new(Verifier {
            inner: webpki,
            check_chain: true,
        }),
        _ => webpki,
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// Verifies the chain but not the name (`skip_hostname_check`), or nothing
/// (`required_insecure`); handshake signatures are always checked.
#[derive(Debug)]
struct Verifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    check_chain: bool,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !self.check_chain {
            return Ok(ServerCertVerified::assertion());
        }
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// tokio-postgres TLS over rustls.
#[derive(Clone)]
struct MakeRustls(Arc<ClientConfig>);

struct RustlsConnect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl MakeTlsConnect<Socket> for MakeRustls {
    type Stream = RustlsStream;
    type TlsConnect = RustlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, Self::Error> {
        Ok(RustlsConnect {
            config: self.0.clone(),
            name: ServerName::try_from(domain.to_string())?,
        })
    }
}

impl TlsConnect<Socket> for RustlsConnect {
    type Stream = RustlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        Box::pin(async move {
            let s = tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await?;
            Ok(RustlsStream(Box::new(s)))
        })
    }
}

/// A TLS stream for tokio-postgres (no channel binding: SCRAM without `-PLUS`).
struct RustlsStream(Box<tokio_rustls::client::TlsStream<Socket>>);

impl AsyncRead for RustlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for RustlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

impl tokio_postgres::tls::TlsStream for RustlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}
