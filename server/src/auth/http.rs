//! The HTTP client of the calls to the OpenID provider (discovery, keys, token): hyper's
//! client over rustls with the system's CAs. Every call is bounded in time and size, and no
//! redirect is followed (a followed redirect would let a provider point us anywhere).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};

/// The longest a provider call may take, connection to last byte.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read from a provider (discovery documents and key sets are small).
const MAX_BODY: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("no answer within {}s", TIMEOUT.as_secs())]
    Timeout,
    #[error("{0}")]
    Request(String),
    #[error("the TLS setup: {0}")]
    Tls(String),
}

#[derive(Clone)]
pub struct ProviderHttp {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl ProviderHttp {
    pub fn new() -> Result<Self, HttpError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        // Unreadable files in the store are skipped, as the other clients of it do.
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| HttpError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = request.into_parts();
        let request = axum::http::Request::from_parts(parts, Full::new(Bytes::from(body)));
        let call = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| HttpError::Request(e.to_string()))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| HttpError::Request(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok(axum::http::Response::from_parts(parts, body.to_vec()))
        };
        tokio::time::timeout(TIMEOUT, call)
            .await
            .map_err(|_| HttpError::Timeout)?
    }
}

impl<'c> AsyncHttpClient<'c> for ProviderHttp {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}
