//! Signed cookies and CSRF tokens. A cookie is `<base64url(JSON)>.<base64url(tag)>`, the
//! tag HMAC-SHA256 over its purpose and the payload, checked in constant time. The payload
//! is readable by whoever holds the cookie: nothing secret goes into one.

use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The longest cookie value read: a browser keeps at most 4 KiB per cookie.
const MAX_COOKIE: usize = 4096;

/// Signs and checks with one key. Never printed: it has no `Debug`.
pub struct Signer {
    key: Vec<u8>,
}

impl Signer {
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    fn mac(&self, purpose: &str, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(payload);
        mac
    }

    /// `value` as a cookie value signed for `purpose`.
    pub fn seal<T: Serialize>(&self, purpose: &str, value: &T) -> String {
        let json = serde_json::to_vec(value).unwrap_or_default();
        let payload = URL_SAFE_NO_PAD.encode(json);
        let tag = self
            .mac(purpose, payload.as_bytes())
            .finalize()
            .into_bytes();
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// The value of a cookie signed for `purpose` by this key; `None` for anything else
    /// (another key, another purpose, one byte changed, not ours at all).
    pub fn open<T: DeserializeOwned>(&self, purpose: &str, cookie: &str) -> Option<T> {
        if cookie.len() > MAX_COOKIE {
            return None;
        }
        let (payload, tag) = cookie.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        // verify_slice compares in constant time.
        self.mac(purpose, payload.as_bytes())
            .verify_slice(&tag)
            .ok()?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
    }

    /// The CSRF token of session `sid`: derived from it, so a token is good for its
    /// session only, and nothing needs storing.
    pub fn csrf(&self, sid: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.mac("csrf", sid.as_bytes()).finalize().into_bytes())
    }

    /// Whether `given` is session `sid`'s CSRF token, compared in constant time.
    pub fn csrf_matches(&self, sid: &str, given: &str) -> bool {
        bool::from(self.csrf(sid).as_bytes().ct_eq(given.trim().as_bytes()))
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn read<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// How a cookie is set.
#[derive(Debug, Clone, Copy)]
pub struct Attributes {
    /// `Secure`: behind https.
    pub secure: bool,
}

impl Attributes {
    /// `Set-Cookie` for `name=value`, living `max_age` seconds: HttpOnly, SameSite=Lax,
    /// Path=/, and Secure behind https.
    pub fn set(&self, name: &str, value: &str, max_age: u64) -> String {
        format!(
            "{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// `Set-Cookie` that removes cookie `name`.
    pub fn clear(&self, name: &str) -> String {
        self.set(name, "", 0)
    }

    /// A cookie's name: `__Host-` first behind https, so that no subdomain can set it.
    pub fn name(&self, base: &str) -> String {
        if self.secure {
            format!("__Host-{base}")
        } else {
            base.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct V {
        sub: String,
        exp: u64,
    }

    #[test]
    fn a_sealed_value_opens_only_as_it_was_sealed() {
        let s = Signer::new(b"k".repeat(32).as_slice());
        let v = V {
            sub: "otto".into(),
            exp: 7,
        };
        let c = s.seal("session", &v);
        assert_eq!(s.open::<V>("session", &c), Some(v));
        assert_eq!(s.open::<V>("login", &c), None, "another purpose");
        assert_eq!(
            Signer::new(b"j".repeat(32).as_slice()).open::<V>("session", &c),
            None,
            "another key"
        );
        // Any one character changed, in the payload or the tag.
        for i in 0..c.len() {
            let mut bytes = c.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let t = String::from_utf8(bytes).unwrap();
            if t != c {
                assert_eq!(s.open::<V>("session", &t), None, "changed at {i}: {t}");
            }
        }
        assert_eq!(s.open::<V>("session", "garbage"), None);
        assert_eq!(s.open::<V>("session", &"a.".repeat(3000)), None);
    }

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let s = Signer::new(b"k".repeat(32).as_slice());
        let t = s.csrf("sid-1");
        assert!(s.csrf_matches("sid-1", &t));
        assert!(!s.csrf_matches("sid-2", &t));
        assert!(!s.csrf_matches("sid-1", ""));
        assert!(!s.csrf_matches("sid-1", &t[1..]));
    }

    #[test]
    fn cookies_are_read_from_every_cookie_header() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, "a=1; sg_session=xyz".parse().unwrap());
        h.append(COOKIE, "b=2".parse().unwrap());
        assert_eq!(read(&h, "sg_session"), Some("xyz"));
        assert_eq!(read(&h, "b"), Some("2"));
        assert_eq!(read(&h, "session"), None);
        let a = Attributes { secure: true };
        assert_eq!(
            a.set(&a.name("s"), "v", 60),
            "__Host-s=v; Path=/; Max-Age=60; HttpOnly; SameSite=Lax; Secure"
        );
        assert_eq!(
            Attributes { secure: false }.clear("s"),
            "s=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"
        );
    }
}
