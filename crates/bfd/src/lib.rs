//! BFD (RFC 5880, single hop RFC 5881) for veg.
//!
//! # Layout
//! - `packet` — the Control packet codec and its reception checks (pure).
//! - `fsm` — the state machine of RFC 5880 §6.8.6, interval math and jitter (pure).
//! - `session` — one session as a sans-I/O object: packets in, packets and deadlines out.
#![warn(missing_docs)]

pub mod fsm;
pub mod packet;
pub mod session;
pub mod sessions;

pub use packet::{Auth, ControlPacket, DecodeError, Diag, State};
pub use session::{AuthKey, Reject, Role, Session, SessionConfig, SessionStatus, Transition};
pub use sessions::{CommandError, DropReason, Event, Outgoing, Sessions};
