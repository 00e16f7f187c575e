//! Test support shared by veg's crates (a dev-dependency only, never shipped): the CI gate,
//! real `ovsdb-server`s with OVN's NB schema and their seeding, network namespaces removed by
//! a drop guard, an independent record of an OVSDB table over a window, and the small process
//! helpers the namespace labs use.
//!
//! It depends on no veg crate, so every crate (veg-ovsdb included) can use it in its tests.

pub mod ci;
pub mod netns;
pub mod ovsdb;
pub mod probe;
pub mod process;
pub mod recorder;

pub use ci::{require, skip_or_fail, under_ci};
pub use netns::Netns;
pub use process::{run, unix_now, wait_until};
