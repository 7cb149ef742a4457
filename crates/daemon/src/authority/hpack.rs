//! One connection's HPACK decoding and the rewriting of header blocks (the
//! module docs of `authority` give the rules and why the tables stay in step).
//!
//! loona-hpack's decoder decodes and keeps the client's dynamic table. What
//! it does not tell is the representation of each field (RFC 7541 §6), which
//! the rewriting needs, so [`scan`] finds where each one ends and what
//! kind it is, from its integers and string lengths alone; the decoder is
//! then handed the block one field at a time.

use std::borrow::Cow;

use loona_hpack::Decoder;
use loona_hpack::decoder::IntegerDecodingError::{NotEnoughOctets, TooManyOctets};
use loona_hpack::decoder::{DecoderError, StringDecodingError};

use super::Malformed;

/// What an `:authority` that is no URI authority becomes.
pub(super) const REPLACEMENT: &[u8] = b"localhost";
/// Bound on dynamic table size updates; the server allows far less.
const TABLE_SIZE_LIMIT: usize = 1 << 24;
/// Entries in the static table (RFC 7541 Appendix A); index 1 is
/// `:authority` with an empty value.
const STATIC_ENTRIES: usize = 61;
/// `:authority: localhost` as a literal without indexing with the static
/// name 1 (RFC 7541 §6.2.2), which no table sees.
const AUTHORITY_LITERAL: &[u8] = b"\x01\x09localhost";
/// An indexed field, `:method: GET` (static 2), that changes no table.
const INDEXED_GET: u8 = 0x82;

/// The kinds of representations (RFC 7541 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An indexed field (§6.1).
    Indexed,
    /// A literal with incremental indexing (§6.2.1).
    Inserting,
    /// A dynamic table size update (§6.3).
    SizeUpdate,
    /// A literal without indexing or never indexed (§6.2.2, §6.2.3).
    Literal,
}

/// One representation: `block[start..end]`, with the integer after its
/// pattern (an index, a size) and, for a literal, its value string from
/// `value`.
#[derive(Debug, Clone, Copy)]
struct Field {
    kind: Kind,
    index: usize,
    start: usize,
    value: usize,
    end: usize,
}

/// The representation at `block[start..]`, found from its first byte, its
/// integers and its string lengths.
fn scan(block: &[u8], start: usize) -> Result<Field, Malformed> {
    let first = block.get(start).copied().unwrap_or_default();
    let (kind, prefix) = match first.leading_zeros() {
        0 => (Kind::Indexed, 7),
        1 => (Kind::Inserting, 6),
        2 => (Kind::SizeUpdate, 5),
        _ => (Kind::Literal, 4),
    };
    let (index, mut value) = read_int(block, start, prefix)?;
    let mut end = value;
    if matches!(kind, Kind::Inserting | Kind::Literal) {
        if index == 0 {
            value = skip_string(block, value)?;
        }
        end = skip_string(block, value)?;
    }
    let field = Field {
        kind,
        index,
        start,
        value,
        end,
    };
    Ok(field)
}

/// Reads the integer at `block[pos..]` with a `prefix`-bit prefix (RFC 7541
/// §5.1), at most 5 bytes as loona-hpack reads it; returns it and its end.
fn read_int(block: &[u8], pos: usize, prefix: u8) -> Result<(usize, usize), Malformed> {
    let cut = || Malformed::Hpack(DecoderError::IntegerDecodingError(NotEnoughOctets));
    let mask = (1 << prefix) - 1;
    let mut value = usize::from(*block.get(pos).ok_or_else(cut)?) & mask;
    if value < mask {
        return Ok((value, pos + 1));
    }
    for i in 0..4 {
        let byte = *block.get(pos + 1 + i).ok_or_else(cut)?;
        value += usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, pos + 2 + i));
        }
    }
    Err(DecoderError::IntegerDecodingError(TooManyOctets).into())
}

/// Where the string literal (RFC 7541 §5.2) at `block[pos..]` ends.
fn skip_string(block: &[u8], pos: usize) -> Result<usize, Malformed> {
    let (len, start) = read_int(block, pos, 7)?;
    let end = start.saturating_add(len);
    if end > block.len() {
        return Err(DecoderError::StringDecodingError(StringDecodingError::NotEnoughOctets).into());
    }
    Ok(end)
}

/// Whether a decoded field is an `:authority` that h2 would refuse.
fn needs_rewrite(name: &[u8], value: &[u8]) -> bool {
    name == b":authority" && http::uri::Authority::try_from(value).is_err()
}

/// What a refused `:authority` `value` becomes when the client inserts it
/// in its table: a value no longer than it, `None` if it is empty.
fn inserted(value: &[u8]) -> Option<&'static [u8]> {
    match value.len() {
        0 => None,
        n => REPLACEMENT.get(..n.min(REPLACEMENT.len())),
    }
}

/// What the server gets for `field`, an `:authority` with the refused
/// `value`; `None` if the field passes as it is.
fn replacement(block: &[u8], field: &Field, value: &[u8]) -> Option<Vec<u8>> {
    let literal = |value: &[u8]| {
        let mut out = block[field.start..field.value].to_vec();
        out.push(value.len() as u8);
        out.extend_from_slice(value);
        out
    };
    match field.kind {
        // The entry's replacement in the server's table is `localhost`.
        Kind::Indexed if field.index > STATIC_ENTRIES && inserted(value) == Some(REPLACEMENT) => {
            None
        }
        Kind::Indexed => Some(AUTHORITY_LITERAL.to_vec()),
        Kind::Inserting => inserted(value).map(literal),
        Kind::Literal => Some(literal(REPLACEMENT)),
        Kind::SizeUpdate => None,
    }
}

/// One connection's header blocks, client to server.
pub(super) struct Rewriter {
    decoder: Decoder<'static>,
    logged: bool,
}

impl Rewriter {
    pub(super) fn new() -> Self {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(TABLE_SIZE_LIMIT);
        Self {
            decoder,
            logged: false,
        }
    }

    /// Decodes a header block; returns it as the server should get it, or
    /// `None` if it passes as it is.
    pub(super) fn rewrite(&mut self, block: &[u8]) -> Result<Option<Vec<u8>>, Malformed> {
        let mut out: Option<Vec<u8>> = None;
        // Size updates are decoded with the field after them: loona-hpack
        // refuses a block that ends with one.
        let mut undecoded = 0;
        let mut pos = 0;
        while pos < block.len() {
            let field = scan(block, pos)?;
            pos = field.end;
            let mut new = None;
            if field.kind != Kind::SizeUpdate {
                let refused = self.decode(&block[undecoded..field.end])?;
                undecoded = field.end;
                new = refused.and_then(|value| replacement(block, &field, &value));
            }
            match (new, &mut out) {
                (Some(new), out) => out
                    .get_or_insert_with(|| block[..field.start].to_vec())
                    .extend_from_slice(&new),
                (None, Some(out)) => out.extend_from_slice(&block[field.start..field.end]),
                (None, None) => {}
            }
        }
        if undecoded < block.len() {
            self.decode_size_updates(&block[undecoded..])?;
        }
        Ok(out)
    }

    /// Decodes one field (after size updates, if any); the value of an
    /// `:authority` that needs rewriting.
    fn decode(&mut self, field: &[u8]) -> Result<Option<Vec<u8>>, Malformed> {
        let mut refused = None;
        self.decoder.decode_with_cb(field, |name, value| {
            if needs_rewrite(&name, &value) {
                refused = Some(Cow::into_owned(value));
            }
        })?;
        if let Some(value) = &refused {
            self.note(value);
        }
        Ok(refused)
    }

    /// Applies size updates that end a block (RFC 7541 allows a block of
    /// them alone, and h2 takes it) with a field after them that changes no
    /// table.
    fn decode_size_updates(&mut self, updates: &[u8]) -> Result<(), Malformed> {
        let mut bytes = updates.to_vec();
        bytes.push(INDEXED_GET);
        self.decoder.decode_with_cb(&bytes, |_, _| {})?;
        Ok(())
    }

    fn note(&mut self, value: &[u8]) {
        if !self.logged {
            self.logged = true;
            tracing::debug!(
                authority = %String::from_utf8_lossy(value),
                "client sent an :authority that is no URI authority (old grpc-go?); serving it as localhost"
            );
        }
    }
}
