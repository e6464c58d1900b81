//! Fuzzes the control protocol's frame and message decoder: any bytes, split at any point,
//! must give messages or a typed error, never a panic, and never buffer past the frame limit
//! (which inputs of the run's 4 KiB cannot reach: the messages crate's proptest
//! `a_stream_longer_than_a_frame_is_never_buffered_past_the_limit` feeds streams past it).

#![no_main]

use libfuzzer_sys::fuzz_target;
use streamrt_messages::protocol::{ClientMsg, FrameDecoder, ServerMsg, FRAME_BYTES_MAX};

fuzz_target!(|data: &[u8]| {
    // The first byte chooses the chunk size the bytes arrive in, as reads would split them.
    let Some((&split, bytes)) = data.split_first() else { return };
    let chunk = usize::from(split).max(1);
    let mut clients = FrameDecoder::new();
    let mut servers = FrameDecoder::new();
    for piece in bytes.chunks(chunk) {
        clients.push(piece);
        servers.push(piece);
        while let Ok(Some(_)) = clients.next_msg::<ClientMsg>() {}
        while let Ok(Some(_)) = servers.next_msg::<ServerMsg>() {}
        assert!(clients.buffered() <= 4 + FRAME_BYTES_MAX);
        assert!(servers.buffered() <= 4 + FRAME_BYTES_MAX);
    }
});
