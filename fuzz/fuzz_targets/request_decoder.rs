//! Feeds arbitrary bytes to the frame reader and the request decoder, exactly
//! as `raiz serve` reads an authenticated connection: no input may panic,
//! recurse without bound (conditions nest at most 64 deep) or allocate beyond
//! the frame limit. `fuzz/seeds/request_decoder` holds a condition nested
//! 20,000 deep. What a peer reaches before login is the `handshake` target.
#![no_main]

use libfuzzer_sys::fuzz_target;
use raiz_client::proto;

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    // A stream of frames, as a connection delivers them.
    while let Ok(payload) = proto::read_frame(&mut input, 1 << 20) {
        let _ = proto::decode_request(&payload);
    }
    // And the bytes as one payload.
    let _ = proto::decode_request(data);
});
