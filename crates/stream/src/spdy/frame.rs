//! SPDY/3 frames and their wire layout (draft 3, section 2.2 and 2.6).
//!
//! A control frame starts with the control bit, the version (3) and the
//! type; a data frame with a 31-bit stream id. Both then have 8 bits of
//! flags and a 24-bit length. [`FrameEncoder`] writes frames (compressing
//! header blocks in wire order); [`FrameDecoder`] cuts frames out of a byte
//! buffer as they arrive, within a size limit.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::FrameError;
use super::headers::{HeaderCompressor, HeaderDecompressor, Headers};

/// The only SPDY version spoken.
pub const VERSION: u16 = 3;
/// Frame header size, control or data.
pub const HEADER_LEN: usize = 8;
/// The largest length a frame can carry (24 bits).
pub const MAX_LENGTH: usize = (1 << 24) - 1;

/// FLAG_FIN of SYN_STREAM, SYN_REPLY, HEADERS and DATA.
pub const FLAG_FIN: u8 = 0x01;
/// FLAG_UNIDIRECTIONAL of SYN_STREAM.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// FLAG_SETTINGS_CLEAR_SETTINGS of SETTINGS.
pub const FLAG_CLEAR_SETTINGS: u8 = 0x01;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// The status of a RST_STREAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RstStatus(pub u32);

impl RstStatus {
    /// PROTOCOL_ERROR.
    pub const PROTOCOL_ERROR: Self = Self(1);
    /// INVALID_STREAM: a frame for a stream that is not active.
    pub const INVALID_STREAM: Self = Self(2);
    /// REFUSED_STREAM: not processed, e.g. too many streams.
    pub const REFUSED_STREAM: Self = Self(3);
    /// UNSUPPORTED_VERSION.
    pub const UNSUPPORTED_VERSION: Self = Self(4);
    /// CANCEL: the stream is no longer needed.
    pub const CANCEL: Self = Self(5);
    /// INTERNAL_ERROR.
    pub const INTERNAL_ERROR: Self = Self(6);
    /// FLOW_CONTROL_ERROR: the peer overran the window.
    pub const FLOW_CONTROL_ERROR: Self = Self(7);
    /// STREAM_IN_USE: a second SYN_REPLY.
    pub const STREAM_IN_USE: Self = Self(8);
    /// STREAM_ALREADY_CLOSED: data after FIN.
    pub const STREAM_ALREADY_CLOSED: Self = Self(9);
    /// FRAME_TOO_LARGE.
    pub const FRAME_TOO_LARGE: Self = Self(11);

    fn name(self) -> Option<&'static str> {
        let names = [
            "PROTOCOL_ERROR",
            "INVALID_STREAM",
            "REFUSED_STREAM",
            "UNSUPPORTED_VERSION",
            "CANCEL",
            "INTERNAL_ERROR",
            "FLOW_CONTROL_ERROR",
            "STREAM_IN_USE",
            "STREAM_ALREADY_CLOSED",
            "INVALID_CREDENTIALS",
            "FRAME_TOO_LARGE",
        ];
        names.get((self.0 as usize).checked_sub(1)?).copied()
    }
}

impl fmt::Display for RstStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "status {}", self.0),
        }
    }
}

/// The status of a GOAWAY: 0 OK, 1 PROTOCOL_ERROR, 2 INTERNAL_ERROR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoAwayStatus(pub u32);

impl GoAwayStatus {
    /// A normal end.
    pub const OK: Self = Self(0);
    /// The peer broke the protocol.
    pub const PROTOCOL_ERROR: Self = Self(1);
    /// Something failed here.
    pub const INTERNAL_ERROR: Self = Self(2);
}

/// SETTINGS ids used here.
pub mod setting {
    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    pub const MAX_CONCURRENT_STREAMS: u32 = 4;
    /// SETTINGS_INITIAL_WINDOW_SIZE.
    pub const INITIAL_WINDOW_SIZE: u32 = 7;
}

/// One entry of a SETTINGS frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// FLAG_SETTINGS_PERSIST_VALUE (1) / FLAG_SETTINGS_PERSISTED (2).
    pub flags: u8,
    /// The setting's id (24 bits).
    pub id: u32,
    /// Its value.
    pub value: u32,
}

/// A SPDY/3 frame. Stream ids are 31 bits, priorities 3.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Frame {
    /// Opens a stream.
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        slot: u8,
        fin: bool,
        unidirectional: bool,
        headers: Headers,
    },
    /// Accepts a stream the peer opened.
    SynReply {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    /// Aborts a stream.
    RstStream { stream_id: u32, status: RstStatus },
    /// Session parameters.
    Settings { clear: bool, entries: Vec<Setting> },
    /// A ping, echoed by the peer that did not send it.
    Ping { id: u32 },
    /// No new streams; `last_good_stream_id` is the last the sender handled.
    GoAway {
        last_good_stream_id: u32,
        status: GoAwayStatus,
    },
    /// More headers for a stream.
    Headers {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    /// More send window for a stream (or, with stream 0, the session).
    WindowUpdate { stream_id: u32, delta: u32 },
    /// Stream data.
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
}

impl Frame {
    /// The frame type's name, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::SynStream { .. } => "SYN_STREAM",
            Frame::SynReply { .. } => "SYN_REPLY",
            Frame::RstStream { .. } => "RST_STREAM",
            Frame::Settings { .. } => "SETTINGS",
            Frame::Ping { .. } => "PING",
            Frame::GoAway { .. } => "GOAWAY",
            Frame::Headers { .. } => "HEADERS",
            Frame::WindowUpdate { .. } => "WINDOW_UPDATE",
            Frame::Data { .. } => "DATA",
        }
    }
}

/// Writes frames; owns the session's outgoing header compression context.
pub struct FrameEncoder {
    headers: HeaderCompressor,
}

impl FrameEncoder {
    /// A new encoder with a fresh compression context.
    pub fn new() -> Result<Self, FrameError> {
        Ok(Self {
            headers: HeaderCompressor::new()?,
        })
    }

    /// The outgoing compression context (tests write raw blocks with it).
    #[cfg(test)]
    pub(crate) fn compressor(&mut self) -> &mut HeaderCompressor {
        &mut self.headers
    }

    /// Appends one frame to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), FrameError> {
        match frame {
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                check_len("DATA", data.len())?;
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(u32::from(fin_flag(*fin)) << 24 | len24(data.len()));
                out.put_slice(data);
                Ok(())
            }
            _ => self.encode_control(frame, out),
        }
    }

    fn encode_control(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), FrameError> {
        let mut body = BytesMut::new();
        let (kind, flags) = match frame {
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                slot,
                fin,
                unidirectional,
                headers,
            } => {
                body.put_u32(stream_id & 0x7fff_ffff);
                body.put_u32(associated_to & 0x7fff_ffff);
                body.put_u8((priority & 0x07) << 5);
                body.put_u8(*slot);
                body.put_slice(&self.headers.compress(headers)?);
                let uni = if *unidirectional {
                    FLAG_UNIDIRECTIONAL
                } else {
                    0
                };
                (TYPE_SYN_STREAM, fin_flag(*fin) | uni)
            }
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            } => {
                body.put_u32(stream_id & 0x7fff_ffff);
                body.put_slice(&self.headers.compress(headers)?);
                (TYPE_SYN_REPLY, fin_flag(*fin))
            }
            Frame::Headers {
                stream_id,
                fin,
                headers,
            } => {
                body.put_u32(stream_id & 0x7fff_ffff);
                body.put_slice(&self.headers.compress(headers)?);
                (TYPE_HEADERS, fin_flag(*fin))
            }
            other => encode_fixed(other, &mut body),
        };
        check_len(frame.kind(), body.len())?;
        out.put_u16(0x8000 | VERSION);
        out.put_u16(kind);
        out.put_u32(u32::from(flags) << 24 | len24(body.len()));
        out.put_slice(&body);
        Ok(())
    }
}

/// The body of the control frames without header blocks: type and flags.
fn encode_fixed(frame: &Frame, body: &mut BytesMut) -> (u16, u8) {
    match frame {
        Frame::RstStream { stream_id, status } => {
            body.put_u32(stream_id & 0x7fff_ffff);
            body.put_u32(status.0);
            (TYPE_RST_STREAM, 0)
        }
        Frame::Settings { clear, entries } => {
            // A SETTINGS frame's count is 32 bits; entries are few.
            body.put_u32(u32::try_from(entries.len()).unwrap_or(u32::MAX));
            for entry in entries {
                body.put_u32(u32::from(entry.flags) << 24 | (entry.id & 0x00ff_ffff));
                body.put_u32(entry.value);
            }
            (TYPE_SETTINGS, if *clear { FLAG_CLEAR_SETTINGS } else { 0 })
        }
        Frame::Ping { id } => {
            body.put_u32(*id);
            (TYPE_PING, 0)
        }
        Frame::GoAway {
            last_good_stream_id,
            status,
        } => {
            body.put_u32(last_good_stream_id & 0x7fff_ffff);
            body.put_u32(status.0);
            (TYPE_GOAWAY, 0)
        }
        Frame::WindowUpdate { stream_id, delta } => {
            body.put_u32(stream_id & 0x7fff_ffff);
            body.put_u32(delta & 0x7fff_ffff);
            (TYPE_WINDOW_UPDATE, 0)
        }
        // Frames with header blocks and DATA are written by the encoder.
        Frame::SynStream { .. }
        | Frame::SynReply { .. }
        | Frame::Headers { .. }
        | Frame::Data { .. } => (0, 0),
    }
}

fn fin_flag(fin: bool) -> u8 {
    if fin { FLAG_FIN } else { 0 }
}

fn len24(len: usize) -> u32 {
    // Callers checked the length against MAX_LENGTH.
    u32::try_from(len).unwrap_or(0) & 0x00ff_ffff
}

fn check_len(_kind: &'static str, len: usize) -> Result<(), FrameError> {
    if len > MAX_LENGTH {
        return Err(FrameError::FrameTooLarge {
            len,
            max: MAX_LENGTH,
        });
    }
    Ok(())
}

/// Cuts frames out of received bytes; owns the session's incoming header
/// decompression context.
pub struct FrameDecoder {
    headers: HeaderDecompressor,
    max_frame: usize,
}

/// What [`FrameDecoder::decode`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A whole frame.
    Frame(Frame),
    /// A control frame of a type SPDY/3 does not define (or CREDENTIAL),
    /// skipped as the draft requires.
    Skipped(u16),
    /// A header-carrying frame whose block inflated but did not parse: the
    /// stream must be reset, the session goes on.
    BadHeaders {
        /// The stream concerned.
        stream_id: u32,
        /// What was wrong.
        error: FrameError,
    },
}

impl FrameDecoder {
    /// A decoder refusing frames longer than `max_frame` and header blocks
    /// inflating to more than `max_header_block`.
    pub fn new(max_frame: usize, max_header_block: usize) -> Self {
        Self {
            headers: HeaderDecompressor::new(max_header_block),
            max_frame,
        }
    }

    /// Takes one frame off the front of `buf`, or `None` if it is not whole
    /// yet. Errors end the session.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, FrameError> {
        let Some(head) = buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let first = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let flags = head[4];
        let len = (u32::from_be_bytes([0, head[5], head[6], head[7]])) as usize;
        let control = first & 0x8000_0000 != 0;
        if control {
            let version = ((first >> 16) & 0x7fff) as u16;
            if version != VERSION {
                return Err(FrameError::UnsupportedVersion(version));
            }
        }
        if len > self.max_frame {
            return Err(FrameError::FrameTooLarge {
                len,
                max: self.max_frame,
            });
        }
        if buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        buf.advance(HEADER_LEN);
        let body = buf.split_to(len).freeze();
        if !control {
            return decode_data(first, flags, body).map(Some);
        }
        self.decode_control((first & 0xffff) as u16, flags, body)
            .map(Some)
    }

    fn decode_control(&mut self, kind: u16, flags: u8, body: Bytes) -> Result<Decoded, FrameError> {
        let frame = match kind {
            TYPE_SYN_STREAM => return self.decode_syn_stream(flags, body),
            TYPE_SYN_REPLY | TYPE_HEADERS => return self.decode_reply(kind, flags, body),
            TYPE_RST_STREAM => decode_rst(flags, body)?,
            TYPE_SETTINGS => decode_settings(flags, body)?,
            TYPE_PING => Frame::Ping {
                id: fixed::<4>("PING", flags, &body)?.get_u32(),
            },
            TYPE_GOAWAY => {
                let mut b = fixed::<8>("GOAWAY", flags, &body)?;
                Frame::GoAway {
                    last_good_stream_id: b.get_u32() & 0x7fff_ffff,
                    status: GoAwayStatus(b.get_u32()),
                }
            }
            TYPE_WINDOW_UPDATE => decode_window_update(flags, body)?,
            other => return Ok(Decoded::Skipped(other)),
        };
        Ok(Decoded::Frame(frame))
    }

    fn decode_syn_stream(&mut self, flags: u8, mut body: Bytes) -> Result<Decoded, FrameError> {
        if body.len() < 10 {
            return Err(FrameError::invalid("SYN_STREAM", "shorter than 10 bytes"));
        }
        let stream_id = body.get_u32() & 0x7fff_ffff;
        let associated_to = body.get_u32() & 0x7fff_ffff;
        let priority = body.get_u8() >> 5;
        let slot = body.get_u8();
        let headers = match self.headers.decompress(&body) {
            Ok(headers) => headers,
            Err(error @ FrameError::BadHeaderBlock(_)) => {
                return Ok(Decoded::BadHeaders { stream_id, error });
            }
            Err(e) => return Err(e),
        };
        if stream_id == 0 {
            return Err(FrameError::invalid("SYN_STREAM", "stream id 0"));
        }
        Ok(Decoded::Frame(Frame::SynStream {
            stream_id,
            associated_to,
            priority,
            slot,
            fin: flags & FLAG_FIN != 0,
            unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
            headers,
        }))
    }

    fn decode_reply(
        &mut self,
        kind: u16,
        flags: u8,
        mut body: Bytes,
    ) -> Result<Decoded, FrameError> {
        let name = if kind == TYPE_SYN_REPLY {
            "SYN_REPLY"
        } else {
            "HEADERS"
        };
        if body.len() < 4 {
            return Err(FrameError::invalid(name, "shorter than 4 bytes"));
        }
        let stream_id = body.get_u32() & 0x7fff_ffff;
        let headers = match self.headers.decompress(&body) {
            Ok(headers) => headers,
            Err(error @ FrameError::BadHeaderBlock(_)) => {
                return Ok(Decoded::BadHeaders { stream_id, error });
            }
            Err(e) => return Err(e),
        };
        if stream_id == 0 {
            return Err(FrameError::invalid(name, "stream id 0"));
        }
        let fin = flags & FLAG_FIN != 0;
        Ok(Decoded::Frame(if kind == TYPE_SYN_REPLY {
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            }
        } else {
            Frame::Headers {
                stream_id,
                fin,
                headers,
            }
        }))
    }
}

/// The body of a fixed-size control frame with no flags defined.
fn fixed<const N: usize>(kind: &'static str, flags: u8, body: &Bytes) -> Result<Bytes, FrameError> {
    if body.len() != N {
        return Err(FrameError::invalid(
            kind,
            format!("{} bytes long, not {N}", body.len()),
        ));
    }
    if flags != 0 {
        return Err(FrameError::invalid(kind, format!("flags {flags:#04x}")));
    }
    Ok(body.clone())
}

fn decode_data(first: u32, flags: u8, data: Bytes) -> Result<Decoded, FrameError> {
    let stream_id = first & 0x7fff_ffff;
    if stream_id == 0 {
        return Err(FrameError::invalid("DATA", "stream id 0"));
    }
    Ok(Decoded::Frame(Frame::Data {
        stream_id,
        fin: flags & FLAG_FIN != 0,
        data,
    }))
}

fn decode_rst(flags: u8, body: Bytes) -> Result<Frame, FrameError> {
    let mut b = fixed::<8>("RST_STREAM", flags, &body)?;
    let stream_id = b.get_u32() & 0x7fff_ffff;
    let status = RstStatus(b.get_u32());
    if stream_id == 0 || status.0 == 0 {
        return Err(FrameError::invalid("RST_STREAM", "stream id or status 0"));
    }
    Ok(Frame::RstStream { stream_id, status })
}

fn decode_settings(flags: u8, mut body: Bytes) -> Result<Frame, FrameError> {
    if body.len() < 4 {
        return Err(FrameError::invalid("SETTINGS", "shorter than 4 bytes"));
    }
    let count = body.get_u32() as usize;
    if body.len() / 8 != count || !body.len().is_multiple_of(8) {
        return Err(FrameError::invalid(
            "SETTINGS",
            format!("{count} entries announced in {} bytes", body.len()),
        ));
    }
    let entries = (0..count)
        .map(|_| {
            let word = body.get_u32();
            Setting {
                flags: (word >> 24) as u8,
                id: word & 0x00ff_ffff,
                value: body.get_u32(),
            }
        })
        .collect();
    Ok(Frame::Settings {
        clear: flags & FLAG_CLEAR_SETTINGS != 0,
        entries,
    })
}

fn decode_window_update(flags: u8, body: Bytes) -> Result<Frame, FrameError> {
    let mut b = fixed::<8>("WINDOW_UPDATE", flags, &body)?;
    let stream_id = b.get_u32() & 0x7fff_ffff;
    let delta = b.get_u32() & 0x7fff_ffff;
    if delta == 0 {
        return Err(FrameError::invalid("WINDOW_UPDATE", "a delta of 0"));
    }
    Ok(Frame::WindowUpdate { stream_id, delta })
}
