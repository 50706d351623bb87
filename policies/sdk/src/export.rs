//! The Wasm export, shared by every policy.

/// Exports a policy as the WIT world `policy` when built for `wasm32`; expands to
/// nothing natively. Call it once at the root of a policy crate:
///
/// ```ignore
/// pub const NAME: &str = "my-policy";
/// pub fn evaluate(input: &serde_json::Value) -> Result<Vec<Finding>, String> { ... }
/// stackgate_policy_sdk::export_policy!(NAME, evaluate);
/// ```
///
/// The crate needs `wit-bindgen` as a wasm32-only dependency and must live in
/// `policies/<name>/` so that `../wit` is the WIT directory.
#[macro_export]
macro_rules! export_policy {
    ($name:ident, $evaluate:ident) => {
        #[cfg(target_arch = "wasm32")]
        mod stackgate_policy_export {
            wit_bindgen::generate!({ world: "policy", path: "../wit" });

            use stackgate::policy::types::{Finding as WitFinding, Severity as WitSeverity};

            struct Policy;

            impl Guest for Policy {
                fn name() -> String {
                    super::$name.to_string()
                }

                fn evaluate(input: String) -> Result<Vec<WitFinding>, String> {
                    let findings = $crate::evaluate_json(&input, super::$evaluate)?;
                    Ok(findings
                        .into_iter()
                        .map(|f| WitFinding {
                            rule: f.rule,
                            severity: match f.severity {
                                $crate::Severity::Error => WitSeverity::Error,
                                $crate::Severity::Warning => WitSeverity::Warning,
                            },
                            resource: f.resource,
                            path: f.path,
                            message: f.message,
                            remediation: f.remediation,
                        })
                        .collect())
                }
            }

            export!(Policy);
        }
    };
}
