//! TLS to PostgreSQL, read from the URL as libpq reads it: `sslmode` (`disable`, `prefer`
//! (the default), `require`, `verify-ca`, `verify-full`) and `sslrootcert` (a PEM file of
//! CA certificates, or `system`).
//!
//! tokio-postgres' own parser knows only `disable`, `prefer` and `require`, and no
//! `sslrootcert`: those two are taken out of the URL here. The mode becomes tokio-postgres'
//! (the verify modes are its `require`) plus a rustls connector that checks the server's
//! certificate as the mode says. The crypto provider is passed explicitly (aws-lc-rs, the
//! one octocrab already brings): nothing depends on a process-wide default provider.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use percent_encoding::percent_decode_str;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// The largest `sslrootcert` read (the RDS global bundle is about 160 KiB).
const MAX_ROOT_FILE: u64 = 4 << 20;

/// libpq's `sslmode`, but `allow` (plain first, TLS if the server insists), which
/// tokio-postgres cannot do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Result<Self, TlsError> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => return Err(TlsError::Mode(other.to_string())),
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Roots {
    /// `sslrootcert=PATH`: a PEM file.
    File(PathBuf),
    /// No `sslrootcert`, or `sslrootcert=system`: the system's (Debian's ca-certificates).
    System,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "sslmode={0:?} is not one of disable, prefer, require, verify-ca, verify-full (allow is not supported)"
    )]
    Mode(String),
    #[error("{0} is not valid UTF-8 once percent-decoded")]
    Encoding(&'static str),
    #[error("sslrootcert={}: {source}", .path.display())]
    ReadRoots { path: PathBuf, source: io::Error },
    #[error("sslrootcert={}: larger than {MAX_ROOT_FILE} bytes", .path.display())]
    RootsTooLarge { path: PathBuf },
    #[error("sslrootcert={}: {reason}", .path.display())]
    BadRoots { path: PathBuf, reason: String },
    #[error(
        "no CA certificates in the system's store for sslmode={0} (install ca-certificates, or give sslrootcert)"
    )]
    NoSystemRoots(SslMode),
    #[error("TLS setup: {0}")]
    Rustls(String),
    #[error("{0}")]
    Url(String),
}

/// What a URL says about the connection: tokio-postgres' config, the mode, and the
/// connector for it.
pub struct Connection {
    pub config: tokio_postgres::Config,
    pub mode: SslMode,
    pub tls: MakeRustls,
}

/// Reads `url`: its `sslmode` and `sslrootcert`, and the rest as tokio-postgres does.
pub fn parse(url: &str) -> Result<Connection, TlsError> {
    let (rest, mode, root) = split(url)?;
    let mut config: tokio_postgres::Config = rest
        .parse()
        .map_err(|e: tokio_postgres::Error| TlsError::Url(super::with_causes(&e)))?;
    let mode = match mode {
        Some(m) => m,
        // A key=value string, or no sslmode: what tokio-postgres read (prefer by default).
        None => match config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => SslMode::Disable,
            tokio_postgres::config::SslMode::Require => SslMode::Require,
            _ => SslMode::Prefer,
        },
    };
    config.ssl_mode(match mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            tokio_postgres::config::SslMode::Require
        }
    });
    let tls = MakeRustls(Arc::new(client_config(mode, root)?));
    Ok(Connection { config, mode, tls })
}

/// Takes `sslmode` and `sslrootcert` out of a URL's query (the last of each counts, as in
/// libpq), leaving the rest as it was.
fn split(url: &str) -> Result<(String, Option<SslMode>, Option<Roots>), TlsError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None, None));
    };
    let (mut mode, mut root, mut kept) = (None, None, Vec::new());
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = |what| {
            percent_decode_str(v)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| TlsError::Encoding(what))
        };
        match k {
            "sslmode" => mode = Some(SslMode::parse(&decoded("sslmode")?)?),
            "sslrootcert" => {
                root = Some(match decoded("sslrootcert")?.as_str() {
                    "system" => Roots::System,
                    path => Roots::File(PathBuf::from(path)),
                })
            }
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, mode, root))
}

/// The rustls config for `mode`. As in libpq, `prefer` and `require` check nothing unless
/// given an `sslrootcert`, and then check the chain as `verify-ca` does; `verify-full` also
/// checks that the certificate names the host.
fn client_config(mode: SslMode, root: Option<Roots>) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, root) {
        (SslMode::Disable, _) | (SslMode::Prefer | SslMode::Require, None) => {
            Arc::new(NoCertCheck(provider.clone()))
        }
        (SslMode::Prefer | SslMode::Require, Some(root)) | (SslMode::VerifyCa, Some(root)) => {
            Arc::new(ChainOnly(webpki(mode, &root, &provider)?))
        }
        (SslMode::VerifyCa, None) => Arc::new(ChainOnly(webpki(mode, &Roots::System, &provider)?)),
        (SslMode::VerifyFull, root) => webpki(mode, &root.unwrap_or(Roots::System), &provider)?,
    };
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

fn webpki(
    mode: SslMode,
    roots: &Roots,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, TlsError> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::File(path) => {
            let bad = |reason: String| TlsError::BadRoots {
                path: path.clone(),
                reason,
            };
            let read = |source| TlsError::ReadRoots {
                path: path.clone(),
                source,
            };
            if std::fs::metadata(path).map_err(read)?.len() > MAX_ROOT_FILE {
                return Err(TlsError::RootsTooLarge { path: path.clone() });
            }
            let pem = std::fs::read(path).map_err(read)?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| bad(format!("not a PEM file: {e}")))?;
                store
                    .add(cert)
                    .map_err(|e| bad(format!("an unusable CA certificate: {e}")))?;
            }
            if store.is_empty() {
                return Err(bad("holds no certificate".into()));
            }
        }
        Roots::System => {
            // Unreadable files in the store are skipped, as the other clients of it do.
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err(TlsError::NoSystemRoots(mode));
            }
        }
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
        .build()
        .map_err(|e| TlsError::Rustls(e.to_string()))
}

/// `prefer` and `require` without `sslrootcert`: an encrypted session with whoever answers,
/// as libpq's. The handshake's signatures are still checked against the certificate.
#[derive(Debug)]
struct NoCertCheck(Arc<CryptoProvider>);

impl ServerCertVerifier for NoCertCheck {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted CA; the name in the certificate may be
/// any. Webpki checks the chain before the name, so a name error means the chain passed.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// tokio-postgres' connector maker on tokio-rustls: one connector per host.
#[derive(Clone)]
pub struct MakeRustls(Arc<ClientConfig>);

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, host: &str) -> Result<RustlsConnect, Self::Error> {
        // An IP address is checked against the certificate's IP SANs.
        let name = ServerName::try_from(host.to_string())?;
        Ok(RustlsConnect {
            config: self.0.clone(),
            name,
        })
    }
}

pub struct RustlsConnect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        Box::pin(async move { Ok(RustlsStream(connector.connect(self.name, stream).await?)) })
    }
}

pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    /// None: SCRAM then goes without channel binding (`SCRAM-SHA-256`, not `-PLUS`), which
    /// every server accepts unless the URL says `channel_binding=require`.
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_come_out_of_the_url_and_the_rest_stays() {
        let (rest, mode, root) = split(
            "postgres://u:p%40ss@db:5432/app?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Frds%20ca.pem&connect_timeout=5",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgres://u:p%40ss@db:5432/app?application_name=x&connect_timeout=5"
        );
        assert_eq!(mode, Some(SslMode::VerifyFull));
        assert_eq!(root, Some(Roots::File("/etc/rds ca.pem".into())));

        let (rest, mode, root) =
            split("postgres://db/app?sslmode=require&sslmode=disable").unwrap();
        assert_eq!(
            (rest.as_str(), mode, root),
            ("postgres://db/app", Some(SslMode::Disable), None)
        );
        let (_, _, root) = split("postgres://db/app?sslrootcert=system").unwrap();
        assert_eq!(root, Some(Roots::System));
    }

    #[test]
    fn the_mode_defaults_to_prefer_and_verify_modes_are_require_to_tokio_postgres() {
        let c = parse("postgres://db/app").unwrap();
        assert_eq!(c.mode, SslMode::Prefer);
        let c = parse("host=db dbname=app sslmode=require").unwrap();
        assert_eq!(c.mode, SslMode::Require);
        let c = parse("postgres://db/app?sslmode=verify-full").unwrap();
        assert_eq!(c.mode, SslMode::VerifyFull);
        assert_eq!(
            c.config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
    }

    #[test]
    fn an_unknown_mode_or_a_missing_root_file_is_an_error_that_names_it() {
        let e = parse("postgres://db/app?sslmode=allow")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("sslmode=\"allow\""), "{e}");
        let e = parse("postgres://db/app?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("sslrootcert=/nonexistent/ca.pem"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = parse(&format!(
            "postgres://db/app?sslmode=verify-full&sslrootcert={}",
            empty.display()
        ))
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("holds no certificate"), "{e}");
    }
}
