//! BFD (RFC 5880, single hop RFC 5881) for veg: the passive side in every gateway Pod
//! (`veg bfdd`) and the active side of `veg monitor`.
//!
//! # Layout
//! - `packet` — the Control packet codec and its reception checks (pure).
//! - `fsm` — the state machine of RFC 5880 §6.8.6, interval math and jitter (pure).
//! - `session` — one session as a sans-I/O object: packets in, packets and deadlines out.
//! - `sessions` — all sessions: demultiplexing, GTSM, allowed peers, one timer heap (pure).
//! - `network` — the UDP sockets (the only file with socket calls).
//! - `control` — the JSON-lines control socket protocol, server and client.
//! - `metrics` — Prometheus metrics (served by veg-daemon's endpoint).
//! - `daemon` — the event loop that owns the sessions.
//! - `error` — [`Error`].

pub mod control;
mod daemon;
mod error;
mod fsm;
pub mod metrics;
mod network;
pub mod packet;
mod session;
mod sessions;

pub use daemon::{DaemonConfig, EventSink, run};
pub use error::Error;
pub use packet::{Auth, ControlPacket, DecodeError, Diag, State};
pub use session::{AuthKey, Reject, Role, Session, SessionConfig, SessionStatus, Transition};
pub use sessions::{CommandError, DropReason, Event, Outgoing, Sessions};
