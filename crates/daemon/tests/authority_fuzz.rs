//! A bounded, deterministic fuzz-style test of the `:authority` fix
//! (src/authority.rs), for `cargo test`; fuzz/ has the cargo-fuzz target,
//! and `AUTHORITY_FUZZ_CORPUS=<dir>` makes this test write the connections
//! it generates there, as seeds for it.
//!
//! A seeded generator plays clients that use the HPACK dynamic table hard:
//! small tables and size updates (many evictions), every kind of literal,
//! Huffman or not, socket paths and other refused authorities (short ones
//! too) among valid ones, header blocks cut into HEADERS and CONTINUATION
//! frames, padding, priority, and other frames between them, among them
//! SETTINGS_HEADER_TABLE_SIZE. Each connection is read in random pieces,
//! and h2's own server (the one under tonic) must serve every request as it
//! was sent, its authority fixed. Then mutated copies go through the oracle
//! in `support/oracle.rs`: no panic, nothing h2 serves alone is lost, and
//! no valid input is rejected. Clients with the habits that try the
//! tables' invariant hardest (a small table, grpc-go's encoding, a short
//! refused authority) get a test of their own, which fails at once on a
//! fix whose replacement is larger than what it replaces.
//!
//! Everything is seeded: a failure is the same on every run.

#[path = "support/oracle.rs"]
mod oracle;

use std::time::Instant;

use httlib_hpack::Encoder;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const REPLACEMENT: &[u8] = b"localhost";
/// Connections generated; each is also mutated [`MUTANTS`] times.
const ROUNDS: usize = 300;
const MUTANTS: usize = 6;
/// Connections of [`tight_tables_stay_in_step`].
const TIGHT_ROUNDS: usize = 300;

const VALID: [&str; 6] = [
    "localhost",
    "localhost:1234",
    "crius.sock",
    "10.0.0.1:10010",
    "[::1]:80",
    "example.com",
];
const REFUSED: [&str; 10] = [
    "/run/crius/crius.sock",
    "/var/run/containerd/containerd.sock",
    "unix:///run/crius/crius.sock",
    "/",
    "a b",
    "/x",
    "[::1",
    "/a/b/c",
    "",
    "/tmp/a-socket-path-long-enough-to-fill-a-small-table-on-its-own-0123456789",
];
const PATHS: [&str; 4] = [
    "/runtime.v1.RuntimeService/Version",
    "/runtime.v1.ImageService/ListImages",
    "/",
    "/a?b=c",
];
const NAMES: [&str; 6] = [
    "content-type",
    "user-agent",
    "grpc-timeout",
    "x-custom",
    "x-a",
    "grpc-accept-encoding",
];
const VALUES: [&str; 8] = [
    "1",
    "abc",
    "application/grpc",
    "grpc-go/1.58.3",
    "9999999u",
    "",
    "a-rather-long-value-that-fills-the-table-quickly-0123456789",
    "gzip",
];
const FLAGS: [u8; 7] = [
    Encoder::BEST_FORMAT | Encoder::WITH_INDEXING | Encoder::HUFFMAN_NAME | Encoder::HUFFMAN_VALUE,
    Encoder::BEST_FORMAT | Encoder::WITH_INDEXING,
    Encoder::WITH_INDEXING | Encoder::HUFFMAN_NAME,
    Encoder::WITH_INDEXING,
    Encoder::HUFFMAN_VALUE,
    Encoder::NEVER_INDEXED,
    Encoder::BEST_FORMAT | Encoder::HUFFMAN_VALUE,
];

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len())]
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// A request as the generator sent it.
#[derive(Debug)]
struct Sent {
    stream: u32,
    method: &'static str,
    path: &'static str,
    authority: &'static str,
    headers: Vec<(&'static str, Vec<u8>)>,
}

impl Sent {
    fn fields(&self) -> Vec<(&str, Vec<u8>)> {
        let mut fields = vec![
            (":method", self.method.as_bytes().to_vec()),
            (":scheme", b"http".to_vec()),
            (":path", self.path.as_bytes().to_vec()),
            (":authority", self.authority.as_bytes().to_vec()),
        ];
        fields.extend(self.headers.iter().cloned());
        fields
    }

    fn valid(&self) -> bool {
        http::uri::Authority::try_from(self.authority).is_ok()
    }

    /// Whether h2 served this request as sent, its authority fixed: a
    /// refused one is `localhost`, or, where it was inserted into the
    /// table and is shorter, as many bytes of it.
    fn check(&self, got: &oracle::Request) {
        assert_eq!(got.stream, self.stream);
        assert_eq!(got.method.as_str(), self.method);
        assert_eq!(
            got.uri.path_and_query().map(|p| p.as_str()),
            Some(self.path)
        );
        let authority = got.uri.authority().map(|a| a.as_str().as_bytes());
        if self.valid() {
            assert_eq!(authority, Some(self.authority.as_bytes()));
        } else {
            let short = &REPLACEMENT[..self.authority.len().min(REPLACEMENT.len())];
            assert!(
                authority == Some(REPLACEMENT) || authority == Some(short),
                "{self:?} served with {:?}",
                got.uri
            );
        }
        let mut headers = http::HeaderMap::new();
        for (name, value) in &self.headers {
            let value = http::HeaderValue::from_bytes(value).expect("header value");
            headers.append(*name, value);
        }
        assert_eq!(got.headers, headers, "{self:?}");
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A SETTINGS frame, sometimes with SETTINGS_HEADER_TABLE_SIZE (which is
/// about the server's encoder: the fix must not apply it to its decoder).
fn settings(rng: &mut Rng) -> Vec<u8> {
    let mut payload = vec![0, 2, 0, 0, 0, 0];
    if rng.chance(2) {
        let size: u32 = rng.pick(&[0, 256, 4096, 65_536]);
        payload.extend_from_slice(&[0, 1]);
        payload.extend_from_slice(&size.to_be_bytes());
    }
    frame(4, 0, 0, &payload)
}

/// A frame of another kind, between requests.
fn other_frame(rng: &mut Rng) -> Vec<u8> {
    match rng.below(3) {
        0 => frame(6, 0, 0, b"pingpong"),
        1 => frame(8, 0, 0, &(1 + rng.below(1000) as u32).to_be_bytes()),
        _ => settings(rng),
    }
}

/// Dynamic table sizes the clients choose. The small ones hold a few
/// entries: every insertion evicts, where a replacement larger than what
/// it replaces would put the tables out of step.
const TABLE_SIZES: [u32; 9] = [0, 64, 100, 128, 160, 200, 256, 512, 4096];

/// A client's habits, for one connection.
struct Habits {
    /// The table size it announces in its first block, if any.
    table: Option<u32>,
    /// The flags of every field, as grpc-go has one encoding for all, or
    /// else each field's at random.
    flags: Option<u8>,
    /// The authority of most of its requests: as a real client, one, so
    /// later requests refer to the entry an earlier one inserted.
    authority: &'static str,
}

impl Habits {
    fn any(rng: &mut Rng) -> Self {
        let authorities = if rng.chance(2) { &VALID[..] } else { &REFUSED };
        Self {
            // A small table (but 0) for half the clients.
            table: rng.chance(2).then(|| TABLE_SIZES[1 + rng.below(6)]),
            flags: rng.chance(2).then_some(FLAGS[0]),
            authority: rng.pick(authorities),
        }
    }

    /// The habits that try the tables' invariant (see the module docs of
    /// src/authority.rs) hardest: a small table, grpc-go's encoding, which
    /// refers to what it inserted, and an inserted authority that is
    /// refused and shorter than `localhost`.
    fn tight(rng: &mut Rng) -> Self {
        let short: Vec<_> = REFUSED
            .into_iter()
            .filter(|a| (1..9).contains(&a.len()))
            .collect();
        Self {
            table: Some(TABLE_SIZES[1 + rng.below(6)]),
            flags: Some(FLAGS[0]),
            authority: rng.pick(&short),
        }
    }
}

/// A request's header block, as an HPACK encoder that uses its table would
/// write it.
fn encode(
    rng: &mut Rng,
    encoder: &mut Encoder<'_>,
    sent: &Sent,
    table: Option<u32>,
    flags: Option<u8>,
) -> Vec<u8> {
    let mut block = Vec::new();
    if let Some(size) = table {
        encoder
            .update_max_dynamic_size(size, &mut block)
            .expect("size update");
    }
    for (name, value) in sent.fields() {
        let mut flags = flags.unwrap_or_else(|| rng.pick(&FLAGS));
        if name == ":authority" && value.is_empty() {
            // Inserted, an empty one has no replacement (see the module
            // docs): h2 refuses that request, as without the fix.
            flags &= !Encoder::WITH_INDEXING;
        }
        let field = (name.as_bytes().to_vec(), value, flags);
        encoder.encode(field, &mut block).expect("encode");
    }
    block
}

/// A header block as HEADERS and CONTINUATION frames, cut at random, with
/// padding and priority at times.
fn frames(rng: &mut Rng, stream: u32, block: &[u8], end_stream: bool) -> Vec<u8> {
    let mut flags = if end_stream { 0x1 } else { 0 };
    let mut first = Vec::new();
    let pad = rng.chance(4).then(|| rng.below(32));
    if let Some(pad) = pad {
        flags |= 0x8;
        first.push(pad as u8);
    }
    if rng.chance(4) {
        flags |= 0x20;
        first.extend_from_slice(&[0, 0, 0, 0, rng.below(256) as u8]);
    }
    let pad = pad.unwrap_or_default();
    let room = 16_384 - first.len() - pad;
    let cut = match rng.chance(3) {
        true => rng.below(block.len() + 1),
        false => block.len(),
    };
    let (head, mut rest) = block.split_at(cut.min(room));
    first.extend_from_slice(head);
    first.resize(first.len() + pad, 0);
    if rest.is_empty() {
        flags |= 0x4;
    }
    let mut out = frame(0x1, flags, stream, &first);
    while !rest.is_empty() {
        let n = (1 + rng.below(rest.len())).min(16_384);
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        let flags = if rest.is_empty() { 0x4 } else { 0 };
        out.extend(frame(0x9, flags, stream, piece));
    }
    out
}

/// A connection of a client with `habits`: the bytes and the requests in
/// it.
fn connection(rng: &mut Rng, habits: &Habits) -> (Vec<u8>, Vec<Sent>) {
    let mut input = PREFACE.to_vec();
    input.extend(settings(rng));
    let mut encoder = Encoder::default();
    let mut sent = Vec::new();
    let mut table = habits.table;
    let field = |rng: &mut Rng| (rng.pick(&NAMES), rng.pick(&VALUES).as_bytes().to_vec());
    // Headers in every request, and others now and then.
    let common: Vec<_> = (0..rng.below(4)).map(|_| field(rng)).collect();
    for i in 0..1 + rng.below(12) {
        let mut headers = common.clone();
        headers.extend((0..rng.below(3)).map(|_| field(rng)));
        if rng.chance(40) {
            headers.push(("x-big", vec![b'x'; 20_000]));
        }
        let authorities = if rng.chance(2) { &VALID[..] } else { &REFUSED };
        let request = Sent {
            stream: 2 * i as u32 + 1,
            method: rng.pick(&["POST", "GET"]),
            path: rng.pick(&PATHS),
            authority: match rng.chance(4) {
                true => rng.pick(authorities),
                false => habits.authority,
            },
            headers,
        };
        let block = encode(rng, &mut encoder, &request, table, habits.flags);
        // Now and then a client changes its table's size.
        table = rng.chance(8).then(|| rng.pick(&TABLE_SIZES));
        let end_stream = rng.chance(2);
        input.extend(frames(rng, request.stream, &block, end_stream));
        if !end_stream {
            input.extend(frame(0, 0x1, request.stream, b"\0\0\0\0\x04\x0a\x02v1"));
        }
        if rng.chance(3) {
            input.extend(other_frame(rng));
        }
        sent.push(request);
    }
    (input, sent)
}

/// Runs a generated connection through the fix, read in pieces of `sizes`
/// and `read` bytes at a time; h2's server must serve every request as
/// sent, its authority fixed.
fn serve_fixed(round: usize, input: &[u8], sent: &[Sent], sizes: &[usize], read: usize) {
    let (out, error) = oracle::rewrite(oracle::Client::new(input, sizes, true, false), read);
    assert!(error.is_none(), "round {round}: {error:?}");
    let (fixed, ok) = oracle::serve_all(oracle::Client::new(&out, &[], false, true));
    assert!(ok, "round {round}: h2 rejected the output");
    assert_eq!(fixed.len(), sent.len(), "round {round}");
    for (sent, got) in sent.iter().zip(&fixed) {
        sent.check(got);
    }
}

/// A copy of `input` with a few random changes.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(out.len() + 1);
        let len = 1 + rng.below(16);
        match rng.below(6) {
            0 if at < out.len() => out[at] ^= 1 << rng.below(8),
            1 if at < out.len() => out[at] = rng.below(256) as u8,
            2 => drop(out.drain(at..(at + len).min(out.len()))),
            3 => out
                .splice(at..at, (0..len).map(|_| rng.below(256) as u8))
                .for_each(drop),
            4 => out.truncate(at),
            _ => {
                let copy = out[at..(at + len).min(out.len())].to_vec();
                out.splice(at..at, copy).for_each(drop);
            }
        }
    }
    out
}

fn pieces(rng: &mut Rng) -> Vec<usize> {
    (0..1 + rng.below(5))
        .map(|_| rng.pick(&[1, 2, 3, 7, 9, 10, 64, 1000, 100_000]))
        .collect()
}

/// A request with static pseudo-headers (`POST`, `http`, `/`) and
/// `authority` as a literal without indexing.
fn request(authority: &str) -> Vec<u8> {
    let mut block = vec![0x83, 0x86, 0x84, 0x01, authority.len() as u8];
    block.extend_from_slice(authority.as_bytes());
    block
}

/// The preface, an empty SETTINGS, then `frames`.
fn with_preface(frames: &[Vec<u8>]) -> Vec<u8> {
    [&[PREFACE.to_vec(), frame(4, 0, 0, &[])], frames]
        .concat()
        .concat()
}

/// What the fuzzing found, as the oracle's cases (the fix's unit tests
/// have them too): each read in one piece and byte by byte.
#[test]
fn findings() {
    let socket = request("/run/crius/crius.sock");
    // A HEADERS frame that depends on its own stream, with bad HPACK: h2
    // resets the stream undecoded and serves the next.
    let self_dependent = with_preface(&[
        frame(0x1, 0x25, 1, &[0, 0, 0, 1, 16, 0x80]),
        frame(0x1, 0x5, 3, &socket),
    ]);
    // A CONTINUATION with the stream's reserved bit set continues.
    let (a, b) = socket.split_at(6);
    let reserved_bit = with_preface(&[frame(0x1, 0x1, 1, a), frame(0x9, 0x4, 0x8000_0001, b)]);
    // A PUSH_PROMISE on a stream h2 has reset (the oracle drops every
    // request's handle): h2 ignores it, the fix refuses it.
    let push_promise = with_preface(&[
        frame(0x1, 0x5, 1, &request("localhost")),
        frame(0x5, 0x4, 1, &[0, 0, 0, 2, 0x82, 0x86, 0x84]),
        frame(6, 0, 0, b"pingpong"),
    ]);
    for (what, input, valid) in [
        ("self-dependent", &self_dependent, true),
        ("reserved bit", &reserved_bit, true),
        ("PUSH_PROMISE", &push_promise, false),
    ] {
        for (sizes, read) in [(&[][..], 8192), (&[1][..], 1)] {
            let checked = oracle::check(input, sizes, read);
            assert_eq!(checked.valid, valid, "{what}");
            assert_eq!(checked.fixed, 1, "{what}: {checked:?}");
        }
    }
}

#[test]
fn h2_serves_what_the_fix_writes() {
    let started = Instant::now();
    let mut rng = Rng(0x5eed_2024_0487_cafe);
    let corpus = std::env::var_os("AUTHORITY_FUZZ_CORPUS").map(std::path::PathBuf::from);
    if let Some(dir) = &corpus {
        std::fs::create_dir_all(dir).expect("creating the corpus directory");
    }
    let (mut requests, mut refused, mut mutants_valid) = (0, 0, 0);
    // Requests of the mutants h2 served through the fix, and alone.
    let (mut mutant_fixed, mut mutant_raw) = (0, 0);
    for round in 0..ROUNDS {
        let habits = Habits::any(&mut rng);
        let (input, sent) = connection(&mut rng, &habits);
        let (sizes, read) = (pieces(&mut rng), rng.pick(&[1, 5, 64, 8192]));
        let case = oracle::Case {
            input: input.clone(),
            sizes: sizes.clone(),
            read,
        };
        let seed = case.to_bytes();
        assert_eq!(oracle::Case::parse(&seed).input, input, "round {round}");
        if let Some(dir) = &corpus {
            let path = dir.join(format!("generated-{round:03}"));
            std::fs::write(&path, seed).expect("writing a seed");
        }
        serve_fixed(round, &input, &sent, &sizes, read);
        // Without the fix, h2 refuses every request with a refused
        // authority, and serves the others alike.
        let (raw, ok) = oracle::serve_all(oracle::Client::new(&input, &[], false, true));
        assert!(ok, "round {round}: h2 rejected the input");
        let valid: Vec<&Sent> = sent.iter().filter(|s| s.valid()).collect();
        assert_eq!(raw.len(), valid.len(), "round {round}");
        for (sent, got) in valid.iter().zip(&raw) {
            sent.check(got);
        }
        requests += sent.len();
        refused += sent.len() - valid.len();
        // And the oracle: through the fix live, and on mutants.
        assert!(oracle::check(&input, &sizes, read).valid, "round {round}");
        for _ in 0..MUTANTS {
            let mutant = mutate(&mut rng, &input);
            let checked = oracle::check(&mutant, &pieces(&mut rng), read);
            mutants_valid += usize::from(checked.valid);
            mutant_fixed += checked.fixed;
            mutant_raw += checked.raw;
        }
    }
    println!(
        "{ROUNDS} connections, {requests} requests ({refused} with a refused authority), \
         {} mutants ({mutants_valid} valid; {mutant_fixed} requests served through the fix, \
         {mutant_raw} alone) in {:?}",
        ROUNDS * MUTANTS,
        started.elapsed()
    );
}

/// Clients that try the tables' invariant hardest ([`Habits::tight`]):
/// were a replacement ever larger than what it replaces, the server would
/// evict entries the client still refers to.
#[test]
fn tight_tables_stay_in_step() {
    let mut rng = Rng(0x7ab1_e5e7_0f5e_a1ed);
    for round in 0..TIGHT_ROUNDS {
        let habits = Habits::tight(&mut rng);
        let (input, sent) = connection(&mut rng, &habits);
        serve_fixed(round, &input, &sent, &[], 8192);
    }
}
