//! The OpenID provider of the login tests (`tests/doubles/oidc/provider.mjs`: npm
//! `oidc-provider`) and a browser stand-in: curl with a cookie jar, following no redirect
//! by itself, so that every step can be looked at.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::root;

pub const CLIENT_ID: &str = "stackgate";
pub const CLIENT_SECRET: &str = "stackgate-test-client-secret-5c1e";
pub const VIOLA: (&str, &str) = ("viola", "viola-password-3b7f");
pub const OTTO: (&str, &str) = ("otto", "otto-password-9d2a");

/// The provider process, on 127.0.0.1.
pub struct Provider {
    pub issuer: String,
    child: Child,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Provider {
    /// Started on `port` (0: any), accepting `redirect_uris`.
    pub fn start(port: u16, redirect_uris: &[&str]) -> Self {
        let dir = root().join("tests/doubles/oidc");
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "{}: no node_modules; run deploy/local/setup.sh (npm ci in tests/doubles/oidc)",
            dir.display()
        );
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("provider.mjs"))
            .args(["--port", &port.to_string()])
            .args(["--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET]);
        for r in redirect_uris {
            cmd.args(["--redirect-uri", r]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tests/doubles/oidc/provider.mjs (node)");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        // oidc-provider prints its warnings first.
        let port = loop {
            let line = lines
                .next()
                .expect("provider.mjs exited before LISTENING")
                .expect("read provider.mjs");
            if let Some(p) = line.trim().strip_prefix("LISTENING ") {
                break p.to_string();
            }
        };
        // Keep reading, so that a full pipe never stalls it.
        std::thread::spawn(move || for _ in lines {});
        Self {
            issuer: format!("http://127.0.0.1:{port}"),
            child,
        }
    }
}

/// An answer: status, headers (names lower-case), body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn location(&self) -> &str {
        self.header("location")
            .unwrap_or_else(|| panic!("no Location in {self:?}"))
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// A cookie-keeping HTTP client (curl and a cookie jar of its own).
pub struct Browser {
    jar: PathBuf,
    _dir: tempfile::TempDir,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        Self {
            jar: dir.path().join("cookies.txt"),
            _dir: dir,
        }
    }

    /// `method url`, with `form` fields (urlencoded) and extra headers; no redirect
    /// followed. Cookies come from and go to the jar unless `use_jar` is false.
    pub fn send(
        &self,
        method: &str,
        url: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
        use_jar: bool,
    ) -> Answer {
        let head = self._dir.path().join("head.txt");
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-S", "-o", "-", "-D"])
            .arg(&head)
            .args(["--max-time", "30", "-X", method]);
        if use_jar {
            cmd.arg("-b").arg(&self.jar).arg("-c").arg(&self.jar);
        }
        for (k, v) in form {
            cmd.arg("--data-urlencode").arg(format!("{k}={v}"));
        }
        for (k, v) in headers {
            cmd.arg("-H").arg(format!("{k}: {v}"));
        }
        cmd.arg(url);
        let out = cmd.output().expect("run curl");
        assert!(
            out.status.success(),
            "curl {method} {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let raw = std::fs::read_to_string(&head).expect("headers");
        let mut lines = raw.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&out.stdout).into_owned(),
        }
    }

    pub fn get(&self, url: &str) -> Answer {
        self.send("GET", url, &[], &[], true)
    }

    pub fn post(&self, url: &str, form: &[(&str, &str)]) -> Answer {
        self.send("POST", url, form, &[], true)
    }

    /// A relative `Location` made absolute against `base`.
    pub fn absolute(base: &str, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!("{}{location}", base.trim_end_matches('/'))
        }
    }

    /// The whole login at `server` through `provider`'s form as `user`: every step checked,
    /// up to the callback's answer (returned, with its Set-Cookie headers).
    pub fn login(&self, server: &str, provider: &Provider, user: (&str, &str)) -> Answer {
        let start = self.get(&format!("{server}/login?next=/"));
        assert_eq!(start.status, 303, "GET /login: {start:?}");
        let to_provider = start.location().to_string();
        assert!(
            to_provider.starts_with(&format!("{}/auth?", provider.issuer)),
            "{to_provider}"
        );
        for want in [
            "response_type=code",
            "code_challenge_method=S256",
            "code_challenge=",
            "state=",
            "nonce=",
            &format!("client_id={CLIENT_ID}"),
        ] {
            assert!(to_provider.contains(want), "no {want} in {to_provider}");
        }
        let auth = self.get(&to_provider);
        assert_eq!(auth.status, 303, "{auth:?}");
        let form_url = Self::absolute(&provider.issuer, auth.location());
        let form = self.get(&form_url);
        assert_eq!(form.status, 200, "{form:?}");
        let action = form
            .body
            .split("action=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_else(|| panic!("no form in {}", form.body));
        assert!(form.body.contains("name=\"password\""), "{}", form.body);
        let submitted = self.post(
            &Self::absolute(&provider.issuer, action),
            &[("login", user.0), ("password", user.1)],
        );
        assert_eq!(submitted.status, 303, "{submitted:?}");
        let resumed = self.get(&Self::absolute(&provider.issuer, submitted.location()));
        assert_eq!(resumed.status, 303, "{resumed:?}");
        let callback = resumed.location().to_string();
        assert!(
            callback.starts_with(&format!("{server}/auth/callback?")),
            "{callback}"
        );
        self.get(&callback)
    }
}
