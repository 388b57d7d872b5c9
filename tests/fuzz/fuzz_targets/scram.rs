//! The SCRAM messages a server sends the proxy: the server-first message (nonce, salt,
//! iterations) and the server-final one (signature or error), for both mechanisms. A
//! hostile upstream must get an error, never a panic or an unbounded derivation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mongoplex::auth::scram::{ClientFirst, Keys, Mechanism};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (first_msg, final_msg) = text.split_once('\n').unwrap_or((text, ""));
    for m in [Mechanism::Sha1, Mechanism::Sha256] {
        let first = ClientFirst::new(m, "user", "fyko+d2lbbFgONRv9qkxdawL");
        let _ = first.message();
        let Ok(challenge) = first.server_first(first_msg) else {
            continue;
        };
        assert!(challenge.iterations >= m.min_iterations());
        // Cap the work a fuzz input can ask for; the proxy derives once per salt.
        if challenge.iterations > 10_000 {
            continue;
        }
        let keys = Keys::derive(m, "pencil", &challenge.salt, challenge.iterations);
        let (message, signature) = challenge.client_final(&keys);
        assert!(message.starts_with("c=biws,r="));
        let _ = signature.verify(final_msg);
    }
});
