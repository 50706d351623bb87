//! `X-Hub-Signature-256`: HMAC-SHA256 of the raw body, compared in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Whether `header` (`sha256=<hex>`) signs `body` with `secret`.
pub fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    // verify_slice compares in constant time.
    mac.verify_slice(&sig).is_ok()
}

/// `sha256=<hex>` for `body`: what GitHub sends.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's documented test vector.
    #[test]
    fn githubs_documented_vector() {
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(verify(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            header
        ));
        assert_eq!(
            sign(b"It's a Secret to Everybody", b"Hello, World!"),
            header
        );
    }

    #[test]
    fn anything_else_fails() {
        let good = sign(b"s", b"body");
        assert!(verify(b"s", b"body", &good));
        assert!(!verify(b"s", b"body!", &good));
        assert!(!verify(b"t", b"body", &good));
        assert!(!verify(b"s", b"body", &good.replace("sha256=", "sha1=")));
        assert!(!verify(b"s", b"body", "sha256=zz"));
        assert!(!verify(b"s", b"body", ""));
        assert!(!verify(b"s", b"body", &good[..good.len() - 2]));
    }
}
