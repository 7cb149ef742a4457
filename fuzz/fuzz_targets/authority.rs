//! Fuzzes criusd's `:authority` fix (crates/daemon/src/authority.rs): the
//! input is a [`oracle::Case`] (client bytes, the pieces the client sends
//! them in, the size of the server's reads), and the oracle the bounded
//! test uses (crates/daemon/tests/authority_fuzz.rs) judges it against h2's
//! own server: no panic, no valid input rejected, nothing h2 serves alone
//! lost, no HPACK or framing error in what the fix writes.
//!
//! Seeds: `AUTHORITY_FUZZ_CORPUS=$PWD/fuzz/corpus/authority cargo test -p
//! crius-daemon --test authority_fuzz` writes the connections that test
//! generates; then `cargo +nightly fuzz run authority fuzz/corpus/authority`.

#![no_main]

use libfuzzer_sys::fuzz_target;

// The bounded test uses the parts this target does not.
#[allow(dead_code)]
#[path = "../../crates/daemon/tests/support/oracle.rs"]
mod oracle;

fuzz_target!(|data: &[u8]| {
    let case = oracle::Case::parse(data);
    oracle::check(&case.input, &case.sizes, case.read);
});
