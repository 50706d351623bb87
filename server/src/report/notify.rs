//! Notifications: a Slack-compatible incoming webhook (`{"text": …}`) hears of a stack that
//! newly drifted and of a deploy that failed. Best effort and bounded: a webhook that is
//! down delays nothing and loses no job; the URL (a secret) is never logged.

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use secrecy::{ExposeSecret, SecretString};

/// How long one post may take, connect included.
const DEADLINE: Duration = Duration::from_secs(5);
/// Slack cuts a message's text at 40,000 characters; ours stay far shorter.
const MAX_TEXT: usize = 3000;

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// Where notifications go; `None`: nowhere.
pub struct Notifier {
    target: Option<(SecretString, Client<Https, Full<Bytes>>)>,
}

impl Notifier {
    pub fn new(url: Option<SecretString>) -> Self {
        let target = url.and_then(|url| {
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_native_roots()
                .inspect_err(|e| tracing::error!(error = %e, "no TLS roots; notifications off"))
                .ok()?
                .https_or_http()
                .enable_http1()
                .build();
            Some((url, Client::builder(TokioExecutor::new()).build(https)))
        });
        Self { target }
    }

    pub fn off() -> Self {
        Self { target: None }
    }

    /// Posts `text`; a failure is logged (without the URL) and otherwise ignored.
    pub async fn send(&self, text: &str) {
        let Some((url, client)) = &self.target else {
            return;
        };
        let body = serde_json::json!({ "text": crate::policy::truncate(text, MAX_TEXT) });
        let request = hyper::Request::post(url.expose_secret())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())));
        let request = match request {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!("notification not sent: the webhook URL is not a valid URL");
                return;
            }
        };
        match tokio::time::timeout(DEADLINE, client.request(request)).await {
            Ok(Ok(r)) if r.status().is_success() => tracing::info!("notification sent"),
            Ok(Ok(r)) => tracing::warn!(status = r.status().as_u16(), "notification refused"),
            Ok(Err(e)) => tracing::warn!(connect = e.is_connect(), "notification not sent"),
            Err(_) => tracing::warn!(
                seconds = DEADLINE.as_secs(),
                "notification not sent: no answer in time"
            ),
        }
    }
}
