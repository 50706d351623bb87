//! A Slack incoming-webhook stand-in (nothing of Slack runs here). It answers as Slack
//! documents: `200 ok` for a JSON body with a non-empty `text`, `400 invalid_payload` for
//! a body that is not JSON, `400 no_text` for one without text; it keeps what it accepted.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

pub struct Slack {
    pub url: String,
    messages: Arc<Mutex<Vec<String>>>,
}

impl Slack {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!(
            "http://{}/services/T000/B000/XXXX",
            listener.local_addr().expect("addr")
        );
        let messages = Arc::new(Mutex::new(Vec::new()));
        let kept = messages.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                let mut reader = BufReader::new(conn);
                let (mut length, mut json) = (0usize, false);
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 2 {
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if lower.starts_with("content-type:") && lower.contains("application/json") {
                        json = true;
                    }
                    line.clear();
                }
                let mut body = vec![0; length.min(1 << 20)];
                let _ = reader.read_exact(&mut body);
                let parsed: Option<serde_json::Value> =
                    json.then(|| serde_json::from_slice(&body).ok()).flatten();
                let (code, answer) = match parsed {
                    None => ("400 Bad Request", "invalid_payload"),
                    Some(v) => match v["text"].as_str() {
                        Some(t) if !t.trim().is_empty() => {
                            kept.lock().unwrap().push(t.to_string());
                            ("200 OK", "ok")
                        }
                        _ => ("400 Bad Request", "no_text"),
                    },
                };
                let mut conn = reader.into_inner();
                let _ = write!(
                    conn,
                    "HTTP/1.1 {code}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        Self { url, messages }
    }

    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }
}
