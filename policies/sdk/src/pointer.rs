//! RFC 6901 JSON pointers, built one step at a time.

/// Escapes one reference token: `~` → `~0`, `/` → `~1`.
pub fn escape(token: &str) -> String {
    if token.contains(['~', '/']) {
        token.replace('~', "~0").replace('/', "~1")
    } else {
        token.to_string()
    }
}

/// `base` + `/` + escaped `key`.
pub fn child(base: &str, key: &str) -> String {
    let mut out = String::with_capacity(base.len() + key.len() + 1);
    out.push_str(base);
    out.push('/');
    out.push_str(&escape(key));
    out
}

/// `base` + `/` + `index`.
pub fn index(base: &str, index: usize) -> String {
    format!("{base}/{index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_per_rfc_6901() {
        assert_eq!(child("/Resources", "a/b~c"), "/Resources/a~1b~0c");
        assert_eq!(index("/x", 3), "/x/3");
        assert_eq!(child("", "Fn::If"), "/Fn::If");
    }

    #[test]
    fn round_trips_through_serde_json() {
        let v = serde_json::json!({"a/b": {"m~n": [1, 2]}});
        let p = index(&child(&child("", "a/b"), "m~n"), 1);
        assert_eq!(v.pointer(&p), Some(&serde_json::json!(2)));
    }
}
