//! Errors of the BFD daemon (I/O and configuration). Malformed packets are not errors but
//! [`DropReason`](crate::DropReason)s: bad input is data.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// A daemon operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A socket could not be opened or bound.
    #[error("cannot bind a BFD socket to {address}: {error}")]
    Bind {
        address: SocketAddr,
        /// The kernel's error.
        error: std::io::Error,
    },
    /// A packet could not be sent.
    #[error("cannot send a BFD packet to {peer}: {error}")]
    Send {
        peer: IpAddr,
        /// The kernel's error.
        error: std::io::Error,
    },
    /// Receiving failed (not a bad packet: the socket itself).
    #[error("cannot receive BFD packets: {error}")]
    Receive {
        /// The kernel's error.
        error: std::io::Error,
    },
    /// The control socket could not be opened.
    #[error("cannot open the control socket {path}: {error}")]
    ControlSocket {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The HTTP listener could not be opened.
    #[error(transparent)]
    Http(#[from] veg_daemon::http::BindError),
    /// The configuration is inconsistent.
    #[error("invalid BFD configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Bind { .. } => "bind",
            Error::Send { .. } => "send",
            Error::Receive { .. } => "receive",
            Error::ControlSocket { .. } => "control_socket",
            Error::Http(_) => "http",
            Error::Config { .. } => "config",
        }
    }
}
