//! The framer and the epoch assembler together: bytes in, epochs out. Pure
//! (no IO, no clock reads): the daemon passes the arrival times of each
//! chunk, the fuzzer and the lab feed it whatever they like.

use gnomon_core::{
    gps::GpsEpoch,
    time::{MonoTime, WallTime},
};
use serde::{Deserialize, Serialize};

use crate::{
    epoch::{AssemblerStats, EpochAssembler},
    framer::{Framer, FramerStats},
    sentence::ParseStrategy,
};

/// Both halves' counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecoderStats {
    pub framer: FramerStats,
    pub assembler: AssemblerStats,
}

/// A receiver's byte stream into epochs.
#[derive(Debug, Clone)]
pub struct Decoder {
    pub framer: Framer,
    pub assembler: EpochAssembler,
}

impl Decoder {
    /// A decoder that resolves dates against `floor`.
    pub fn new(floor: WallTime) -> Self {
        Self::with_strategy(floor, ParseStrategy::default())
    }

    pub fn with_strategy(floor: WallTime, strategy: ParseStrategy) -> Self {
        Self {
            framer: Framer::new(),
            assembler: EpochAssembler::with_strategy(floor, strategy),
        }
    }

    /// Feeds one chunk as read, with the system and monotonic clocks at
    /// its arrival; returns the epochs it completed.
    pub fn push(
        &mut self,
        bytes: &[u8],
        received_wall: WallTime,
        received_mono: MonoTime,
    ) -> Vec<GpsEpoch> {
        let sentences = self.framer.push(bytes);
        self.assemble(&sentences, received_wall, received_mono)
    }

    /// End of stream: a last unterminated sentence, then the open epoch.
    pub fn finish(&mut self) -> Vec<GpsEpoch> {
        let sentences = self.framer.finish();
        let mut out = self.assemble(&sentences, WallTime::UNIX_EPOCH, MonoTime::ZERO);
        out.extend(self.assembler.flush());
        out
    }

    pub fn stats(&self) -> DecoderStats {
        DecoderStats {
            framer: self.framer.stats(),
            assembler: self.assembler.stats(),
        }
    }

    fn assemble(
        &mut self,
        sentences: &[String],
        received_wall: WallTime,
        received_mono: MonoTime,
    ) -> Vec<GpsEpoch> {
        sentences
            .iter()
            .filter_map(|s| {
                self.assembler
                    .push_sentence(s, received_wall, received_mono)
            })
            .collect()
    }
}

/// Decodes a capture file's text (gpsd's test-log format: `#` comment
/// lines, then the receiver's output). Arrival times are left at zero.
pub fn decode_capture(text: &str, floor: WallTime) -> Vec<GpsEpoch> {
    decode_capture_with(text, floor, ParseStrategy::default()).0
}

/// [`decode_capture`] with a parse strategy, returning the counters too.
pub fn decode_capture_with(
    text: &str,
    floor: WallTime,
    strategy: ParseStrategy,
) -> (Vec<GpsEpoch>, DecoderStats) {
    let mut d = Decoder::with_strategy(floor, strategy);
    let mut out = Vec::new();
    for line in text.split_inclusive('\n') {
        if line.starts_with('#') {
            continue;
        }
        out.extend(d.push(line.as_bytes(), WallTime::UNIX_EPOCH, MonoTime::ZERO));
    }
    out.extend(d.finish());
    (out, d.stats())
}

#[cfg(test)]
mod tests {
    use gnomon_core::gps::FixMode;
    use proptest::prelude::*;

    use super::*;

    fn floor() -> WallTime {
        WallTime::from_utc(1999, 8, 22, 0, 0, 0, 0).unwrap()
    }

    #[test]
    fn capture_with_comments_decodes() {
        let text = "# Name: test\n# $GPRMC,in,a,comment*00\n\
            $GPGGA,193221.00,2037.72792,N,08704.08478,W,1,04,1.7,-30.40,M,-13.9,M,,*7D\r\n\
            $GPRMC,193221.00,A,2037.7279,N,08704.0848,W,00.1,201.8,231207,01,W,A*2D\r\n";
        let e = decode_capture(text, floor());
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].fix, FixMode::Fix3D);
        assert_eq!(
            e[0].utc.unwrap().rfc3339_millis(),
            "2007-12-23T19:32:21.000Z"
        );
    }

    #[test]
    fn received_times_come_from_the_chunk_that_opened_the_epoch() {
        let mut d = Decoder::new(floor());
        let w = WallTime::from_unix_secs(1_000);
        let m = MonoTime::from_nanos(5);
        assert!(d
            .push(
                b"$GPGGA,193221.00,2037.72792,N,08704.08478,W,1,04,1.7,-30.40,M,-13.9,M,,*7D\n",
                w,
                m
            )
            .is_empty());
        let e = d.finish();
        assert_eq!((e[0].received_wall, e[0].received_mono), (w, m));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..20)) {
            let mut d = Decoder::new(floor());
            for c in &chunks {
                let _ = d.push(c, WallTime::UNIX_EPOCH, MonoTime::ZERO);
            }
            let _ = d.finish();
        }

        #[test]
        fn random_fields_in_valid_frames_never_panic(
            kind in prop::sample::select(vec!["GPRMC", "GNGGA", "GPGSA", "GNGNS", "GPZDA", "BDRMC"]),
            fields in proptest::collection::vec("[0-9A-Z.\\-]{0,9}", 0..20),
            floor_secs in -5_000_000_000i64..10_000_000_000i64,
        ) {
            let body = format!("{kind},{}", fields.join(","));
            let sum = body.bytes().fold(0u8, |c, b| c ^ b);
            let line = format!("${body}*{sum:02X}\r\n");
            let mut d = Decoder::new(WallTime::from_unix_secs(floor_secs));
            let _ = d.push(line.as_bytes(), WallTime::UNIX_EPOCH, MonoTime::ZERO);
            let _ = d.finish();
        }
    }
}
