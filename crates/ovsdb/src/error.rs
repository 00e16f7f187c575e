//! Errors of the OVSDB client. Each says which remote, which method or operation, and what the
//! server or the system said.

use crate::jsonrpc::FrameError;

/// An OVSDB operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A remote string is not `unix:PATH` or `tcp:HOST:PORT`.
    #[error("invalid remote {remote:?}: expected unix:PATH, tcp:HOST:PORT or ssl:HOST:PORT")]
    BadRemote {
        /// The text.
        remote: String,
    },
    /// Connecting failed.
    #[error("cannot connect to {remote}: {error}")]
    Connect {
        remote: String,
        /// The system's error.
        error: std::io::Error,
    },
    /// The connection broke; the outcome of a pending transaction is unknown.
    #[error("connection to {remote} lost")]
    Disconnected { remote: String },
    /// The stream held something that is not JSON-RPC.
    #[error("protocol error from {remote}: {error}")]
    Protocol {
        remote: String,
        /// What was wrong.
        error: FrameError,
    },
    /// The server answered a request with an error.
    #[error("{method} on {remote} failed: {error}")]
    Rpc {
        remote: String,
        method: String,
        /// The server's error, as JSON text.
        error: String,
    },
    /// An operation of a transaction failed (or its commit did).
    #[error("transaction on {remote} failed at {operation}: {error} ({details})")]
    Transaction {
        remote: String,
        /// `operation N (op on table)`, or `commit`.
        operation: String,
        /// The server's error code, e.g. `constraint violation`.
        error: String,
        /// The server's details.
        details: String,
    },
    /// No remote is (or has) the cluster leader.
    #[error("no leader among {remotes}")]
    NoLeader {
        /// The remotes tried.
        remotes: String,
    },
    /// A TLS file could not be used.
    #[error("TLS: {path}: {reason}")]
    Tls {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Nothing answered in time.
    #[error("{what} timed out after {seconds} s")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        seconds: u64,
    },
}

impl Error {
    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::BadRemote { .. } => "bad_remote",
            Error::Connect { .. } => "connect",
            Error::Disconnected { .. } => "disconnected",
            Error::Protocol { .. } => "protocol",
            Error::Rpc { .. } => "rpc",
            Error::Transaction { .. } => "transaction",
            Error::NoLeader { .. } => "no_leader",
            Error::Tls { .. } => "tls",
            Error::Timeout { .. } => "timeout",
        }
    }

    /// Whether retrying on another connection may help (the outcome of a write may be
    /// unknown: make the transaction idempotent, e.g. with a `wait` guard).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. }
                | Error::Disconnected { .. }
                | Error::NoLeader { .. }
                | Error::Timeout { .. }
        )
    }
}
