//! The admin socket: while `serve` holds the store, the admin tool's
//! commands on the same data directory are sent to it and carried out by
//! it, with the client's output, input, working directory and user.
//! The wire format is docs/admin-socket.md.

pub mod client;
mod listener;
mod session;
mod stdio;
mod wire;

pub use listener::Listener;

/// The socket's name in the data directory.
pub const SOCKET_NAME: &str = "admin.sock";
