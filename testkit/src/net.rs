//! Loopback ports for servers whose address must be known before they
//! start. A server that can take port 0 and log its address should: a
//! free port is only free until someone else binds it.

use std::net::{SocketAddr, TcpListener};

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A loopback address nobody listens on right now.
pub fn next_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}
