//! Everything gnomon says to chrony.
//!
//! - [`client`]: chrony's command socket (cmdmon) over our own Unix datagram
//!   socket, with chrony-candm's message types; typed queries mapped into
//!   `gnomon-core` types ([`map`]) and commands.
//! - [`sources_file`]: renders a source plan as a chrony sources file and
//!   replaces it atomically ([`atomic_file`], also used for gnomond's state).
//! - [`refclock_sock`]: the sample chrony's SOCK refclock reads, in the
//!   target's `struct timeval` layout, and the sender that writes it.

pub mod apply;
pub mod atomic_file;
pub mod client;
pub mod error;
pub mod map;
pub mod refclock_sock;
pub mod sources_file;
