//! A policy that misbehaves as its settings say: `{"mode": "loop" | "bomb" | "panic" |
//! "recurse" | "garbage" | "error" | "ok"}`. Built only to show that each misbehaviour
//! gives an `error` verdict within the deadline and leaves the host healthy.

/// What the guest will do, from the input document's `settings.mode`.
pub fn mode(input: &str) -> String {
    serde_json::from_str::<serde_json::Value>(input)
        .ok()
        .and_then(|v| v["settings"]["mode"].as_str().map(str::to_string))
        .unwrap_or_else(|| "ok".into())
}

/// Recursion the optimiser cannot turn into a loop; it is meant never to return.
#[inline(never)]
#[allow(unconditional_recursion)]
pub fn recurse(n: u64, acc: &mut Vec<u64>) -> u64 {
    acc.push(n);
    let r = recurse(n.wrapping_add(1), acc);
    acc.push(r);
    r.wrapping_add(n)
}

#[cfg(target_arch = "wasm32")]
mod export {
    wit_bindgen::generate!({ world: "policy", path: "../../../policies/wit" });

    use stackgate::policy::types::Severity;

    struct Hostile;

    impl Guest for Hostile {
        fn name() -> String {
            "hostile-guest".into()
        }

        fn evaluate(input: String) -> Result<Vec<Finding>, String> {
            match super::mode(&input).as_str() {
                "loop" => {
                    let mut x: u64 = 0;
                    loop {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                    }
                }
                "bomb" => {
                    let mut hoard: Vec<Vec<u8>> = Vec::new();
                    loop {
                        hoard.push(vec![1u8; 1 << 20]);
                        std::hint::black_box(&hoard);
                    }
                }
                "panic" => panic!("the hostile guest panics on purpose"),
                "recurse" => {
                    let mut acc = Vec::new();
                    let r = super::recurse(0, &mut acc);
                    Err(format!("unreachable {r}"))
                }
                "garbage" => Ok(vec![Finding {
                    rule: String::new(),
                    severity: Severity::Error,
                    resource: "\u{0}".into(),
                    path: "not a pointer".into(),
                    message: "x".repeat(10),
                    remediation: String::new(),
                }]),
                "error" => Err("the hostile guest cannot decide".into()),
                _ => Ok(Vec::new()),
            }
        }
    }

    export!(Hostile);
}
