//! Everything a peer reaches before it has authenticated, exactly as
//! `raiz serve` reads it: the 8-byte prologue, then one frame of at most
//! `MAX_HELLO_FRAME` bytes decoded as a hello (and nothing else). No input may
//! panic, recurse without bound or allocate beyond the hello limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use raiz_client::proto;

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    if let Some((_version, word)) = proto::parse_prologue(head) {
        let _ = proto::Status::from_u16(word);
    }
    let mut input = rest;
    if let Ok(payload) = proto::read_frame(&mut input, proto::MAX_HELLO_FRAME) {
        let _ = proto::decode_hello(&payload);
    }
});
