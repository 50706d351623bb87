//! The login's routes: `GET /login`, `GET /auth/callback`, `POST /logout` and
//! `GET /auth/session`; `auth` does the work.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::HttpState;
use crate::auth::{CSRF_FIELD, CallbackQuery, Outcome, Viewer};

#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// A 303 to `location` that sets `cookies`, never cached.
fn redirect(out: Outcome) -> Response {
    let mut r = (StatusCode::SEE_OTHER, ()).into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&out.location) {
        h.insert(header::LOCATION, v);
    }
    set_cookies(h, &out.set_cookies);
    r
}

fn set_cookies(h: &mut HeaderMap, cookies: &[String]) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            h.append(header::SET_COOKIE, v);
        }
    }
}

/// `GET /login[?next=/runs/7]`: to the provider.
pub async fn login(State(app): State<Arc<HttpState>>, Query(q): Query<LoginQuery>) -> Response {
    match app.auth.begin(q.next.as_deref()).await {
        Ok(out) => redirect(out),
        Err(r) => r.into_response(),
    }
}

/// `GET /auth/callback?code=…&state=…`: the session, then back to where the login began.
pub async fn callback(
    State(app): State<Arc<HttpState>>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    match app.auth.finish(&headers, &q).await {
        Ok(out) => redirect(out),
        Err(r) => r.into_response(),
    }
}

/// `POST /logout` (a form with the CSRF token): the session cookie removed.
pub async fn logout(State(app): State<Arc<HttpState>>, viewer: Viewer, body: Bytes) -> Response {
    let csrf = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v.into_owned());
    match app.auth.logout(&viewer, csrf.as_deref()) {
        Ok(cookies) => {
            let mut r = Html(
                "<!doctype html><title>Signed out</title><p>Signed out of stackgate. \
                 <a href=\"/login\">Sign in again</a></p>\n",
            )
            .into_response();
            set_cookies(r.headers_mut(), &cookies);
            r
        }
        Err(r) => r.into_response(),
    }
}

/// `GET /auth/session`: who this is, their roles, and the CSRF token for their forms.
pub async fn session(viewer: Viewer) -> Response {
    let mut r = Json(viewer.summary()).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
