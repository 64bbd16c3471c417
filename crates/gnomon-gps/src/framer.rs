//! A byte stream from the receiver (partial reads, CRLF or LF, line noise,
//! NULs, non-ASCII) into NMEA sentences `$…*hh` / `!…*hh` whose checksum
//! holds. Whatever does not frame is counted in [`FramerStats`], never
//! fatal; memory is bounded by [`MAX_LINE_LEN`].

use serde::{Deserialize, Serialize};

/// NMEA 0183 allows 82 characters including `$` and CRLF; receivers in the
/// wild exceed it (Skytraq's PSTI runs to 100), so lines get this much slack.
pub const NMEA_MAX_LEN: usize = 82;
pub const LINE_SLACK: usize = 38;
/// Longest line kept, without its line ending; longer lines are discarded.
pub const MAX_LINE_LEN: usize = NMEA_MAX_LEN + LINE_SLACK;

/// What the framer saw besides good sentences.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FramerStats {
    /// Sentences handed on (checksum good).
    pub sentences: u64,
    /// Lines with a `*hh` that does not match.
    pub bad_checksum: u64,
    /// Lines that start like a sentence but have no `*hh` checksum.
    pub missing_checksum: u64,
    /// Lines longer than [`MAX_LINE_LEN`].
    pub overlong: u64,
    /// Bytes outside any sentence that are not line endings or blanks
    /// (binary protocols, NULs, noise).
    pub noise_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between sentences: waiting for `$` or `!`.
    Idle,
    /// Collecting a sentence into the buffer.
    InSentence,
    /// In an over-long line: dropping bytes until the line ends.
    Skipping,
}

/// Turns chunks of bytes into checked sentences.
#[derive(Debug, Clone)]
pub struct Framer {
    buf: Vec<u8>,
    state: State,
    stats: FramerStats,
}

impl Default for Framer {
    fn default() -> Self {
        Self::new()
    }
}

impl Framer {
    pub fn new() -> Self {
        Self {
            buf: Vec::with_capacity(MAX_LINE_LEN + 1),
            state: State::Idle,
            stats: FramerStats::default(),
        }
    }

    pub fn stats(&self) -> FramerStats {
        self.stats
    }

    /// Feeds one chunk; returns the sentences it completed, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for &b in bytes {
            self.byte(b, &mut out);
        }
        out
    }

    /// End of stream: a last sentence without line ending still counts.
    pub fn finish(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        if self.state == State::InSentence {
            self.end_line(&mut out);
        }
        self.state = State::Idle;
        self.buf.clear();
        out
    }

    fn byte(&mut self, b: u8, out: &mut Vec<String>) {
        let starts_sentence = b == b'$' || b == b'!';
        let ends_line = b == b'\r' || b == b'\n';
        match self.state {
            State::Idle => {
                if starts_sentence {
                    self.start(b);
                } else if !(ends_line || b == b' ' || b == b'\t') {
                    self.stats.noise_bytes += 1;
                }
            }
            State::InSentence => {
                if starts_sentence {
                    // A new start inside a line: keep what came before if it
                    // is a whole sentence (a lost line ending), else count it.
                    self.end_line(out);
                    self.start(b);
                } else if ends_line {
                    self.end_line(out);
                    self.state = State::Idle;
                } else if (0x20..0x7f).contains(&b) {
                    if self.buf.len() >= MAX_LINE_LEN {
                        self.stats.overlong += 1;
                        self.buf.clear();
                        self.state = State::Skipping;
                    } else {
                        self.buf.push(b);
                    }
                } else {
                    // NUL, control or non-ASCII byte: the line ends here.
                    self.end_line(out);
                    self.stats.noise_bytes += 1;
                    self.state = State::Idle;
                }
            }
            State::Skipping => {
                if starts_sentence {
                    self.start(b);
                } else if ends_line {
                    self.state = State::Idle;
                }
            }
        }
    }

    fn start(&mut self, b: u8) {
        self.buf.clear();
        self.buf.push(b);
        self.state = State::InSentence;
    }

    fn end_line(&mut self, out: &mut Vec<String>) {
        let line = trim_trailing_blanks(&self.buf);
        match check(line) {
            Check::Good => {
                // Only printable ASCII reaches the buffer, so this is UTF-8.
                if let Ok(s) = std::str::from_utf8(line) {
                    self.stats.sentences += 1;
                    out.push(s.to_owned());
                }
            }
            Check::BadChecksum => self.stats.bad_checksum += 1,
            Check::MissingChecksum => self.stats.missing_checksum += 1,
        }
        self.buf.clear();
    }
}

fn trim_trailing_blanks(mut line: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = line {
        line = rest;
    }
    line
}

enum Check {
    Good,
    BadChecksum,
    MissingChecksum,
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// `$body*hh` with hh the XOR of body.
fn check(line: &[u8]) -> Check {
    let Some((_, rest)) = line.split_first() else {
        return Check::MissingChecksum;
    };
    let Some(star) = rest.iter().rposition(|&b| b == b'*') else {
        return Check::MissingChecksum;
    };
    let (body, tail) = rest.split_at(star);
    let (hi, lo) = match tail {
        [b'*', hi, lo] => (*hi, *lo),
        _ => return Check::MissingChecksum,
    };
    let (Some(hi), Some(lo)) = (hex_value(hi), hex_value(lo)) else {
        return Check::MissingChecksum;
    };
    let want = (hi << 4) | lo;
    let got = body.iter().fold(0u8, |c, b| c ^ b);
    if body.is_empty() {
        Check::MissingChecksum
    } else if got == want {
        Check::Good
    } else {
        Check::BadChecksum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GGA: &str = "$GPGGA,193221.00,2037.72792,N,08704.08478,W,1,04,1.7,-30.40,M,-13.9,M,,*7D";
    const RMC: &str = "$GPRMC,193221.00,A,2037.7279,N,08704.0848,W,00.1,201.8,231207,01,W,A*2D";

    #[test]
    fn partial_reads_reassemble() {
        let mut f = Framer::new();
        let all = format!("{GGA}\r\n{RMC}\r\n");
        let mut got = Vec::new();
        for chunk in all.as_bytes().chunks(7) {
            got.extend(f.push(chunk));
        }
        assert_eq!(got, vec![GGA.to_owned(), RMC.to_owned()]);
        assert_eq!(f.stats().sentences, 2);
    }

    #[test]
    fn lf_only_and_missing_final_newline() {
        let mut f = Framer::new();
        let mut got = f.push(format!("{GGA}\n{RMC}").as_bytes());
        assert_eq!(got.len(), 1);
        got.extend(f.finish());
        assert_eq!(got, vec![GGA.to_owned(), RMC.to_owned()]);
    }

    #[test]
    fn noise_between_sentences_is_counted() {
        let mut f = Framer::new();
        let mut input = vec![0u8, 0, 0xb5, 0x62, b'x'];
        input.extend_from_slice(GGA.as_bytes());
        input.extend_from_slice(b"\0\0\xff");
        input.extend_from_slice(RMC.as_bytes());
        input.extend_from_slice(b"\r\n");
        let got = f.push(&input);
        assert_eq!(got, vec![GGA.to_owned(), RMC.to_owned()]);
        assert_eq!(f.stats().noise_bytes, 5 + 3);
    }

    #[test]
    fn bad_checksum_is_counted_not_emitted() {
        let mut f = Framer::new();
        let bad = GGA.replace("*7D", "*7E");
        let got = f.push(format!("{bad}\r\n{RMC}\r\n$GPGGA,no,checksum\r\n").as_bytes());
        assert_eq!(got, vec![RMC.to_owned()]);
        assert_eq!(f.stats().bad_checksum, 1);
        assert_eq!(f.stats().missing_checksum, 1);
    }

    #[test]
    fn overlong_line_is_dropped_and_framing_recovers() {
        let mut f = Framer::new();
        let long = format!("$GPTXT,{}*00\r\n", "A".repeat(500));
        let got = f.push(format!("{long}{RMC}\r\n").as_bytes());
        assert_eq!(got, vec![RMC.to_owned()]);
        assert_eq!(f.stats().overlong, 1);
        assert!(f.buf.capacity() <= 4 * MAX_LINE_LEN);
    }

    #[test]
    fn lowercase_checksum_and_aivdm_bang_sentences() {
        let mut f = Framer::new();
        let lower = GGA.replace("*7D", "*7d");
        let body = "AIVDM,1,1,,B,15M67FC000G?ufbE`FepT@3n00Sa,0";
        let sum = body.bytes().fold(0u8, |c, b| c ^ b);
        let got = f.push(format!("{lower}\n!{body}*{sum:02X}\n").as_bytes());
        assert_eq!(got.len(), 2);
    }
}
