#![no_main]

// The harness builds the app (policies compiled, state opened) on its first call. Doing that
// in init keeps it out of the first unit's time, which -timeout would otherwise count.
libfuzzer_sys::fuzz_target!(
    init: {
        let _ = stackgate::fuzz::webhook(&[]);
    },
    |data: &[u8]| {
        let _ = stackgate::fuzz::webhook(data);
    }
);
