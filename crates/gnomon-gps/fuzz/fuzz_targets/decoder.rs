//! Fuzz target: arbitrary bytes, cut into arbitrary reads, through the
//! framer, the sentence parsers and the epoch assembler. Any panic is a bug.

#![no_main]

use gnomon_core::time::{MonoTime, WallTime};
use gnomon_gps::decode::Decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first bytes choose the floor and the read sizes, so the fuzzer
    // explores both date resolution and partial reads.
    let (head, body) = data.split_at(data.len().min(9));
    let mut floor_bytes = [0u8; 8];
    for (dst, src) in floor_bytes.iter_mut().zip(head) {
        *dst = *src;
    }
    let floor = WallTime::from_unix_nanos(i64::from_le_bytes(floor_bytes));
    let chunk = usize::from(head.get(8).copied().unwrap_or(64)).max(1);
    let mut decoder = Decoder::new(floor);
    for (i, piece) in body.chunks(chunk).enumerate() {
        let t = u64::try_from(i).unwrap_or(u64::MAX);
        let _ = decoder.push(
            piece,
            floor,
            MonoTime::from_nanos(t.saturating_mul(1_000_000)),
        );
    }
    let _ = decoder.finish();
    let _ = decoder.stats();
});
