//! veg's OVSDB client (RFC 7047) for the OVN Northbound database.
//!
//! # Layout
//! - `jsonrpc` — JSON-RPC framing and messages (pure).
//! - `protocol` — atoms, sets, maps, rows, conditions, mutations, operations (pure).
//! - `replica` — the in-memory copy of monitored tables, fed by `update2`/`update3` (pure).
//! - `nb` — typed rows of the OVN Northbound tables veg manages.
//! - `diff` — desired rows of one owner vs the replica → the minimal operations (pure).
//! - `client` — connections (unix, tcp, ssl), request matching, echo, reconnect, clustered leader.
//! - `tls` — `ssl:` remotes with CA, certificate and key files.
//! - `error` — [`Error`].

mod client;
pub mod diff;
mod error;
pub mod jsonrpc;
pub mod nb;
mod protocol;
mod replica;
mod schema;
mod tls;

pub use client::{Client, ClientConfig, MonitorSpec, Remote};
pub use diff::{Desired, Parent, diff};
pub use error::Error;
pub use nb::NbRow;
pub use protocol::{Atom, Condition, Mutation, Operation, OperationResult, Row, Value};
pub use replica::Replica;
pub use schema::{ColumnKind, Schema};
pub use tls::TlsFiles;
