//! Length-prefixed frames over a blocking stream, and postcard payloads.

use std::io::{self, Read, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream failed or ended.
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    /// The announced length is over the limit.
    #[error("frame of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Announced length.
        len: u64,
        /// The reader's limit.
        limit: u32,
    },
}

/// Encodes a message as a frame payload.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serializing owned, well-formed values into a Vec cannot fail.
    postcard::to_allocvec(msg).unwrap_or_default()
}

/// Decodes a frame payload.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(payload)
}

/// Writes one frame (length, then payload); the caller flushes.
pub fn write_frame(w: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(payload)
}

/// Reads one frame's payload, refusing lengths over `limit` before reading them.
/// The buffer grows as bytes arrive, so a peer announcing a large frame and
/// sending little costs little memory.
pub fn read_frame(r: &mut impl Read, limit: u32) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len);
    if len > limit {
        return Err(FrameError::TooLarge {
            len: u64::from(len),
            limit,
        });
    }
    let mut buf = Vec::with_capacity((len as usize).min(1 << 20));
    let got = r.take(u64::from(len)).read_to_end(&mut buf)?;
    if got != len as usize {
        return Err(FrameError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("frame truncated: {got} of {len} bytes"),
        )));
    }
    Ok(buf)
}
