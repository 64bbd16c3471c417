//! Everything gnomon reads from the GPS receiver.
//!
//! - [`framer`]: a byte stream (partial reads, noise, CRLF/LF) into NMEA
//!   sentences with checksums checked.
//! - [`epoch`]: sentences of the same second (RMC/GGA/GSA/GNS/ZDA, any
//!   talker) merged into one `gnomon_core::gps::GpsEpoch`, dates resolved
//!   against the time floor.
//! - [`decode`]: the two together, for a stream or a capture file.

pub mod decode;
pub mod epoch;
pub mod framer;
pub mod gate;
pub mod gpsd;
pub mod pps;
pub mod sentence;
pub mod serial;
