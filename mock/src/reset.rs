//! `reset_before_headers`: closing a connection before any response byte is written.
//!
//! An actix-web handler always produces a response, so the socket itself is needed. At accept
//! time actix gives `on_connect` the raw TCP stream; its file descriptor is remembered in the
//! connection's extensions. A handler that must "crash" duplicates that descriptor and shuts the
//! socket down in both directions: the client reads EOF (and later writes see a reset) without a
//! single header byte, and the response actix then tries to write fails and is discarded.

use std::any::Any;
use std::io;

use actix_web::dev::Extensions;
use actix_web::HttpRequest;

#[cfg(unix)]
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

/// Descriptor of the connection's socket, owned by actix's connection dispatcher.
#[cfg(unix)]
#[derive(Clone, Copy)]
struct ConnFd(RawFd);

/// `HttpServer::on_connect` callback.
pub fn remember_socket(conn: &dyn Any, ext: &mut Extensions) {
    #[cfg(unix)]
    if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
        ext.insert(ConnFd(tcp.as_raw_fd()));
    }
    #[cfg(not(unix))]
    let _ = (conn, ext);
}

/// Shuts down the socket carrying `req`.
#[cfg(unix)]
#[allow(unsafe_code)] // the crate's one `unsafe`: borrowing actix's socket descriptor, see below
pub fn close_connection(req: &HttpRequest) -> io::Result<()> {
    let Some(ConnFd(fd)) = req.conn_data::<ConnFd>().copied() else {
        return Err(io::Error::other("connection socket unknown"));
    };
    // SAFETY: the descriptor belongs to the connection that is carrying this very request; actix
    // keeps that connection (and so the descriptor) open while the handler future is polled, and
    // this borrow ends before the handler returns.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let socket = std::net::TcpStream::from(borrowed.try_clone_to_owned()?);
    socket.shutdown(std::net::Shutdown::Both)
}

#[cfg(not(unix))]
pub fn close_connection(_req: &HttpRequest) -> io::Result<()> {
    Err(io::Error::other("reset_before_headers needs a unix socket"))
}
