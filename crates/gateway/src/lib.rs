//! The data plane inside a veg gateway Pod.
//!
//! # Layout
//! - `plan` — the pure planner: the gateway's addresses and policies → the sysctls, ip rules,
//!   routes and nftables tables the Pod must have.
//!
//! Applying a plan (rtnetlink, nftables), `veg gateway init|run|show` and uplink fate sharing
//! are not written yet (issue 5).
#![warn(missing_docs)]

pub mod plan;

pub use plan::{FamilyConfig, GatewayConfig, Plan, PlanError, plan};
