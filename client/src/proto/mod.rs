//! The wire protocol between `raiz-client` and `raiz serve`.
//!
//! A connection opens with an 8-byte prologue each way: `RAIZ`, the protocol
//! version (u16 little-endian) and a u16 — flags from the client ([`FLAG_TLS`]
//! asks for TLS), a [`Status`] from the server. A server that cannot serve the
//! client answers with a non-zero status and closes, so an incompatible client
//! gets a clear error instead of garbage. When TLS was asked for, the TLS
//! handshake follows on the same stream.
//!
//! Then frames: a u32 little-endian payload length, then a postcard-encoded
//! [`Envelope`]. The first request is [`Request::Hello`] (authentication), in a
//! frame of at most [`MAX_HELLO_FRAME`] bytes; the server decodes it with
//! [`decode_hello`], which knows no other request, so nothing but a hello is
//! decoded before a peer has authenticated. Every
//! request carries an id that its reply echoes, so a client may send several
//! before reading the replies (pipelining); the server answers in order. A frame
//! longer than the receiver's limit is refused before it is read.
//!
//! Invariants: a payload never exceeds the limit the reader set; a frame that
//! does not decode gets a [`crate::ErrorKind::BadRequest`] reply (the framing
//! itself is still intact), a length over the limit closes the connection (the
//! rest of the stream cannot be trusted to be skipped).

mod frame;
mod message;

pub use frame::{
    decode, decode_hello, decode_request, encode, read_frame, write_frame, FrameError, Hello,
};
pub use message::*;

/// First bytes of every connection, both ways.
pub const MAGIC: [u8; 4] = *b"RAIZ";

/// Protocol version this build speaks (2: positions carry `found` and
/// `on_record`; key count and position; soft last-seeks. 3: the change
/// stream, table dumps, index pages in table information).
pub const VERSION: u16 = 3;

/// Prologue flag: the client wants TLS.
pub const FLAG_TLS: u16 = 1;

/// Default limit on a frame's payload: a maximal variable-length record
/// (64 MiB) plus room for the request around it.
pub const DEFAULT_MAX_FRAME: u32 = 72 << 20;

/// Limit on the first frame of a connection (the hello), before the peer has
/// authenticated: user, password and client name fit in far less.
pub const MAX_HELLO_FRAME: u32 = 16 << 10;

/// The server's answer in its prologue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Status {
    /// Go on.
    Ok = 0,
    /// The server does not speak the client's version.
    VersionMismatch = 1,
    /// This connection must use TLS.
    TlsRequired = 2,
    /// TLS was asked for but the server has no certificate.
    TlsUnavailable = 3,
    /// The first bytes were not a raiz prologue.
    NotRaiz = 4,
    /// The server is at its connection limit (`max_connections`, or too many
    /// connections from this address still logging in): retry later.
    Busy = 5,
}

impl Status {
    /// The status for a wire value.
    pub fn from_u16(v: u16) -> Option<Status> {
        Some(match v {
            0 => Status::Ok,
            1 => Status::VersionMismatch,
            2 => Status::TlsRequired,
            3 => Status::TlsUnavailable,
            4 => Status::NotRaiz,
            5 => Status::Busy,
            _ => return None,
        })
    }
}

/// Builds a prologue.
pub fn prologue(version: u16, word: u16) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&MAGIC);
    b[4..6].copy_from_slice(&version.to_le_bytes());
    b[6..].copy_from_slice(&word.to_le_bytes());
    b
}

/// Splits a prologue into (version, word), or None when the magic is wrong.
pub fn parse_prologue(b: &[u8; 8]) -> Option<(u16, u16)> {
    if b[..4] != MAGIC {
        return None;
    }
    Some((
        u16::from_le_bytes([b[4], b[5]]),
        u16::from_le_bytes([b[6], b[7]]),
    ))
}
