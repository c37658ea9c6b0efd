//! The Sieve parser and evaluator never panic and always end: the input is
//! split at the first NUL into a script and a message; any script that
//! compiles is run over the message with a small step cap.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postline::sieve::{self, Input, Limits};

fuzz_target!(|data: &[u8]| {
    let (script, msg) = match data.iter().position(|&c| c == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"From: a@b.example\nSubject: x\n\nbody\n"[..]),
    };
    let Ok(text) = std::str::from_utf8(script) else {
        return;
    };
    let Ok(s) = sieve::compile_script(text) else {
        return;
    };
    let input = Input {
        message: msg,
        envelope_from: Some("s@x.example"),
        envelope_to: Some("r+d@y.example"),
        now: 1_767_225_600,
        local_offset: 60,
    };
    let out = sieve::run(&s, input, Limits { max_steps: 100_000 });
    // Every run says what becomes of the message (the implicit keep at least).
    assert!(!out.actions.is_empty());
    // A vacation reply is decided and built from any message and script
    // text without a panic, and no line break reaches its header fields.
    for a in &out.actions {
        if let sieve::ActionKind::Vacation { reason, options } = &a.kind {
            let cx = sieve::vacation::Context {
                message: msg,
                sender: Some("s@x.example"),
                recipient: Some("r+d@y.example"),
                now: 1_767_225_600,
            };
            if let Ok(r) = sieve::vacation::decide(reason, options, cx, &()) {
                assert!(!r.from.contains('\n') && !r.subject.contains('\n'));
            }
        }
    }
});
