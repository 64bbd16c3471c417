//! Exit codes, following sysexits(3), so that systemd's
//! `RestartPreventExitStatus=78` keeps a daemon with a bad config down.

/// Clean shutdown.
pub const OK: u8 = 0;
/// Bad command line.
pub const USAGE: u8 = 64;
/// A bug or an unexpected internal failure.
pub const SOFTWARE: u8 = 70;
/// An OS resource could not be set up (socket, directory).
pub const OSERR: u8 = 71;
/// Missing permission (a device, chrony's socket, the state directory).
pub const NOPERM: u8 = 77;
/// The configuration is missing, unreadable or invalid.
pub const CONFIG: u8 = 78;
