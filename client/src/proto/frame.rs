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

/// Decodes a request frame the way the server does: the id first, so that a
/// request that does not decode can still be answered under its own id.
/// `Err((Some(id), why))`: the body is bad; `Err((None, why))`: not even an id.
pub fn decode_request(payload: &[u8]) -> Result<(u64, super::Request), (Option<u64>, String)> {
    let (id, rest) = postcard::take_from_bytes::<u64>(payload)
        .map_err(|_| (None, "a frame without a request id".to_owned()))?;
    match decode::<super::Request>(rest) {
        Ok(req) => Ok((id, req)),
        // Custom errors lose their message in postcard: say what they are.
        Err(postcard::Error::SerdeDeCustom) => Err((
            Some(id),
            format!(
                "request {id} does not decode: a value is invalid or a condition is nested more than {} levels deep",
                raiz_engine::index::Condition::MAX_DEPTH
            ),
        )),
        Err(e) => Err((Some(id), format!("request {id} does not decode: {e}"))),
    }
}

/// The hello of a connection: [`super::Request::Hello`]'s fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
    /// What the client calls itself.
    pub client: String,
}

/// [`super::Request`] reduced to its variant 0, `Hello`: the same encoding,
/// and no other variant to decode. Anything else fails on its tag.
#[derive(serde::Deserialize)]
#[serde(rename = "Request")]
enum HelloOnly {
    Hello {
        user: String,
        password: String,
        client: String,
    },
}

/// Decodes the first request of a connection, which must be a hello; like
/// [`decode_request`], the id first. Nothing but a hello's three strings is
/// decoded, so an unauthenticated peer reaches no other decoder (no recursive
/// type, no large collection).
pub fn decode_hello(payload: &[u8]) -> Result<(u64, Hello), (Option<u64>, String)> {
    let (id, rest) = postcard::take_from_bytes::<u64>(payload)
        .map_err(|_| (None, "a frame without a request id".to_owned()))?;
    match decode::<HelloOnly>(rest) {
        Ok(HelloOnly::Hello {
            user,
            password,
            client,
        }) => Ok((
            id,
            Hello {
                user,
                password,
                client,
            },
        )),
        Err(_) => Err((Some(id), "the first request must be a hello".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Envelope, Request};

    #[test]
    fn frames_round_trip_and_limits_hold() {
        let req = Request::TableExists("sx3".into());
        let payload = encode(&Envelope {
            id: 42u64,
            body: &req,
        });
        let mut wire = Vec::new();
        write_frame(&mut wire, &payload).unwrap();
        let got = read_frame(&mut wire.as_slice(), 1024).unwrap();
        assert_eq!(decode_request(&got).unwrap(), (42, req));
        // Over the limit: refused before reading the payload.
        assert!(matches!(
            read_frame(&mut wire.as_slice(), 3),
            Err(FrameError::TooLarge { limit: 3, .. })
        ));
        // Truncated.
        let cut = &wire[..wire.len() - 1];
        assert!(matches!(
            read_frame(&mut &cut[..], 1024),
            Err(FrameError::Io(_))
        ));
        // A huge announced length costs no allocation up front.
        let huge = [0xff, 0xff, 0xff, 0x0f, 1, 2];
        assert!(read_frame(&mut &huge[..], u32::MAX).is_err());
        // Bad bodies keep their id; no id at all is reported as such.
        assert_eq!(decode_request(&[7, 250]).unwrap_err().0, Some(7));
        assert_eq!(decode_request(&[0xff]).unwrap_err().0, None);
        assert_eq!(decode_request(&[]).unwrap_err().0, None);
    }

    #[test]
    fn only_a_hello_decodes_before_login() {
        let hello = Request::Hello {
            user: "ana".into(),
            password: "pw".into(),
            client: "test".into(),
        };
        // Hello is variant 0 of Request: the one-variant mirror depends on it.
        assert_eq!(encode(&hello)[0], 0);
        let payload = encode(&Envelope {
            id: 3u64,
            body: &hello,
        });
        let (id, h) = decode_hello(&payload).unwrap();
        assert_eq!(
            (id, h.user.as_str(), h.password.as_str(), h.client.as_str()),
            (3, "ana", "pw", "test")
        );
        assert_eq!(decode_request(&payload).unwrap(), (3, hello));
        for req in [Request::Ping, Request::ListTables, Request::Checkpoint] {
            let payload = encode(&Envelope {
                id: 4u64,
                body: &req,
            });
            assert_eq!(decode_hello(&payload).unwrap_err().0, Some(4));
        }
        assert_eq!(decode_hello(&[]).unwrap_err().0, None);
        assert_eq!(decode_hello(&[1, 0, 0xff]).unwrap_err().0, Some(1));
    }

    /// The fuzz seeds are what their names say (see fuzz/seeds).
    #[test]
    fn fuzz_seeds_decode_as_named() {
        let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
        let frames = |target: &str, name: &str| {
            let bytes = std::fs::read(seeds.join(target).join(name)).unwrap();
            let mut input = bytes.as_slice();
            let mut out = Vec::new();
            while let Ok(p) = read_frame(&mut input, 1 << 20) {
                out.push(p);
            }
            out
        };
        for name in ["deep-set-filter", "deep-create-index"] {
            let f = frames("request_decoder", name);
            let (id, why) = decode_request(&f[0]).unwrap_err();
            assert!(
                id.is_some() && why.contains("nested more than 64"),
                "{name}: {why}"
            );
        }
        let f = frames("request_decoder", "at-the-limit");
        assert!(decode_request(&f[0]).is_ok());
        assert_eq!(decode_request(&f[1]).unwrap().1, Request::Ping);
        let hello = std::fs::read(seeds.join("handshake/hello")).unwrap();
        let payload = read_frame(&mut &hello[8..], crate::proto::MAX_HELLO_FRAME).unwrap();
        assert_eq!(decode_hello(&payload).unwrap().1.user, "ana");
        let deep = std::fs::read(seeds.join("handshake/deep-before-login")).unwrap();
        let payload = read_frame(&mut &deep[8..], crate::proto::MAX_HELLO_FRAME).unwrap();
        assert!(decode_hello(&payload).is_err());
        let over = std::fs::read(seeds.join("handshake/deep-over-the-limit")).unwrap();
        assert!(read_frame(&mut &over[8..], crate::proto::MAX_HELLO_FRAME).is_err());
    }
}
