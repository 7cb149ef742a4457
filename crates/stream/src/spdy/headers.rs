//! SPDY/3 header blocks: the name/value list of SYN_STREAM, SYN_REPLY and
//! HEADERS frames, and the zlib contexts that compress them.
//!
//! A block is a 32-bit count of pairs, each a 32-bit length and the name,
//! a 32-bit length and the value (several values of one name joined by NUL).
//! Every block a peer sends goes through one zlib stream, primed with the
//! SPDY/3 dictionary and ended by a sync flush per frame, so each side keeps
//! one [`HeaderCompressor`] for what it sends and one [`HeaderDecompressor`]
//! for what it receives, for the whole session.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::dictionary::dictionary;
use super::error::FrameError;

/// The headers of a stream: lowercase names, in the order they were given.
/// One name may appear more than once; on the wire its values travel joined
/// by NUL, as SPDY/3 requires.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a value; the name is lowercased.
    pub fn add(&mut self, name: &str, value: &str) -> &mut Self {
        self.0.push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// Builder form of [`Headers::add`].
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.add(name, value);
        self
    }

    /// The first value of a name (names compare without regard to case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a name, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The uncompressed block: names grouped, values of one name joined by NUL.
    pub fn encode_block(&self) -> Vec<u8> {
        let mut names: Vec<&str> = Vec::new();
        for (name, _) in &self.0 {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
        let mut out = Vec::new();
        put_len(&mut out, names.len());
        for name in names {
            let joined: Vec<&str> = self.get_all(name).collect();
            let value = joined.join("\0");
            put_len(&mut out, name.len());
            out.extend_from_slice(name.as_bytes());
            put_len(&mut out, value.len());
            out.extend_from_slice(value.as_bytes());
        }
        out
    }

    /// Parses an uncompressed block. Names must be non-empty, lowercase and
    /// not repeated; values must be UTF-8.
    pub fn decode_block(block: &[u8]) -> Result<Self, FrameError> {
        let mut rest = block;
        let count = take_u32(&mut rest)?;
        // Every pair needs at least its two lengths.
        if u64::from(count) * 8 > rest.len() as u64 {
            return Err(FrameError::BadHeaderBlock(format!(
                "{count} pairs announced in {} bytes",
                rest.len()
            )));
        }
        let mut headers = Headers::new();
        for _ in 0..count {
            let name = take_str(&mut rest)?;
            let value = take_str(&mut rest)?;
            check_name(&name, &headers)?;
            for part in value.split('\0') {
                headers.0.push((name.clone(), part.to_owned()));
            }
        }
        if !rest.is_empty() {
            return Err(FrameError::BadHeaderBlock(format!(
                "{} bytes after the last pair",
                rest.len()
            )));
        }
        Ok(headers)
    }
}

fn check_name(name: &str, seen: &Headers) -> Result<(), FrameError> {
    if name.is_empty() {
        return Err(FrameError::BadHeaderBlock("an empty header name".into()));
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(FrameError::BadHeaderBlock(format!(
            "header name {name:?} is not lowercase"
        )));
    }
    if seen.get(name).is_some() {
        return Err(FrameError::BadHeaderBlock(format!(
            "header name {name:?} appears twice"
        )));
    }
    Ok(())
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Header blocks are bounded far below 4 GiB by the frame length (24 bits).
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
}

fn take_u32(rest: &mut &[u8]) -> Result<u32, FrameError> {
    let Some((head, tail)) = rest.split_first_chunk::<4>() else {
        return Err(FrameError::BadHeaderBlock(
            "the block ends inside a length".into(),
        ));
    };
    *rest = tail;
    Ok(u32::from_be_bytes(*head))
}

fn take_str(rest: &mut &[u8]) -> Result<String, FrameError> {
    let len = take_u32(rest)? as usize;
    if len > rest.len() {
        return Err(FrameError::BadHeaderBlock(format!(
            "a {len}-byte string in the {} bytes left",
            rest.len()
        )));
    }
    let (text, tail) = rest.split_at(len);
    *rest = tail;
    String::from_utf8(text.to_vec())
        .map_err(|_| FrameError::BadHeaderBlock("a header that is not UTF-8".into()))
}

/// Compresses the header blocks one side sends, in the order they go on the
/// wire.
pub struct HeaderCompressor {
    zlib: Compress,
}

impl HeaderCompressor {
    /// A fresh context primed with the SPDY/3 dictionary.
    pub fn new() -> Result<Self, FrameError> {
        let mut zlib = Compress::new(Compression::default(), true);
        zlib.set_dictionary(dictionary())
            .map_err(|e| FrameError::Compression(e.to_string()))?;
        Ok(Self { zlib })
    }

    /// Compresses one block and sync-flushes, so the peer can decode it
    /// without waiting for more.
    pub fn compress(&mut self, headers: &Headers) -> Result<Vec<u8>, FrameError> {
        self.compress_block(&headers.encode_block())
    }

    /// Compresses an already encoded block.
    pub(crate) fn compress_block(&mut self, block: &[u8]) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::with_capacity(block.len() / 2 + 64);
        let start_in = self.zlib.total_in();
        loop {
            let used = usize::try_from(self.zlib.total_in() - start_in).unwrap_or(usize::MAX);
            let input = block.get(used..).unwrap_or_default();
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            self.zlib
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| FrameError::Compression(e.to_string()))?;
            let used = usize::try_from(self.zlib.total_in() - start_in).unwrap_or(usize::MAX);
            // Done once all input is in and zlib left room in the output:
            // the sync flush is then complete.
            if used == block.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// Decompresses the header blocks the peer sends; a block that inflates to
/// more than its limit is refused.
pub struct HeaderDecompressor {
    zlib: Decompress,
    max_block: usize,
}

impl HeaderDecompressor {
    /// A fresh context; blocks may inflate to at most `max_block` bytes.
    pub fn new(max_block: usize) -> Self {
        Self {
            zlib: Decompress::new(true),
            max_block,
        }
    }

    /// Inflates one frame's compressed block and parses it.
    pub fn decompress(&mut self, compressed: &[u8]) -> Result<Headers, FrameError> {
        let block = self.inflate(compressed)?;
        Headers::decode_block(&block)
    }

    fn inflate(&mut self, compressed: &[u8]) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::with_capacity(compressed.len() * 4 + 64);
        let start_in = self.zlib.total_in();
        loop {
            let used = usize::try_from(self.zlib.total_in() - start_in).unwrap_or(usize::MAX);
            let input = compressed.get(used..).unwrap_or_default();
            if out.capacity() == out.len() {
                out.reserve(out.capacity().max(256));
            }
            let before = (self.zlib.total_in(), self.zlib.total_out());
            match self
                .zlib
                .decompress_vec(input, &mut out, FlushDecompress::Sync)
            {
                Ok(Status::StreamEnd) => {
                    return Err(FrameError::BadHeaderBlock(
                        "the peer ended its header compression stream".into(),
                    ));
                }
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => self.prime(e.needs_dictionary())?,
                Err(e) => return Err(FrameError::Compression(e.to_string())),
            }
            if out.len() > self.max_block {
                return Err(FrameError::HeaderBlockTooLarge {
                    max: self.max_block,
                });
            }
            let used = usize::try_from(self.zlib.total_in() - start_in).unwrap_or(usize::MAX);
            let progressed = before != (self.zlib.total_in(), self.zlib.total_out());
            if used == compressed.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if !progressed && out.len() < out.capacity() {
                return Err(FrameError::BadHeaderBlock(
                    "a truncated compressed block".into(),
                ));
            }
        }
    }

    fn prime(&mut self, wanted: Option<u32>) -> Result<(), FrameError> {
        let id = self
            .zlib
            .set_dictionary(dictionary())
            .map_err(|e| FrameError::Compression(e.to_string()))?;
        if wanted != Some(id) {
            return Err(FrameError::Compression(format!(
                "the peer compresses with dictionary {wanted:x?}, not SPDY/3's {id:x}"
            )));
        }
        Ok(())
    }
}
