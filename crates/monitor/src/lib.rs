//! `veg monitor`: BFD-driven nexthops for stock OVN (monitor mode).
//!
//! The controller publishes, on each BFD-enabled reroute policy, the candidate nexthops
//! (`veg-candidates`) and the timers (`veg-bfd`) — the contract is in `veg_api::names`. The
//! monitor, with a leg in the VPC, runs an active BFD session to every candidate and — in the
//! same task that sees a session change — writes each policy's `nexthops` = its candidates whose
//! session is Up, in one transaction. A new candidate joins only once Up; with none Up the
//! reroutes are empty and the 29090 drop applies.
//!
//! Two monitors may serve one VPC. Both run every session; only the holder of the writer
//! lease writes. The lease is a key of `NB_Global.external_ids`
//! (`veg-monitor:<router>` = `<holder>/<counter>`): the holder bumps the counter every
//! `renew`; a standby that sees no bump for `timeout` (by its own clock, so no clock sync is
//! needed) takes over with a write guarded by `wait` on the value it saw, so only one standby
//! wins. Every nexthop write carries the same guard, so a deposed writer's write fails
//! (fencing). The NB is used rather than a Kubernetes Lease because the monitor already holds
//! an NB connection, needs no API-server access (it runs the same in the lab), and the guard
//! makes the lease and the writes one atomic decision.
//!
//! # Layout
//! - `policies` — the policies watched, the sessions they need, the nexthop writes (pure).
//! - `lease` — the writer lease as one monitor sees it (pure, time passed in).
//! - `dampening` — flapping instances held out of the nexthops (pure, time passed in).
//! - `run` — the process: NB client, embedded BFD daemon, the loop.
//! - `error` — [`MonitorError`].

mod dampening;
mod error;
mod lease;
mod policies;
mod run;

pub use dampening::{Dampening, DampeningConfig, Verdict};
pub use error::MonitorError;
pub use lease::{Lease, lease_key};
pub use policies::{Watched, nexthop_updates, wanted_sessions, watched};
pub use run::{MonitorConfig, monitor_spec, run};
