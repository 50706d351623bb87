#![no_main]

// As stackgate's replay test runs it: the input builder, then both policies natively on
// the JSON text, parsed as a guest parses it.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(json) = stackgate::fuzz::policy_input(data)
        && let Ok(input) = serde_json::from_str::<serde_json::Value>(&json)
    {
        let _ = policy_open_ingress::evaluate(&input);
        let _ = policy_least_privilege_iam::evaluate(&input);
    }
});
