//! Helpers shared by the namespace labs of the `veg` integration tests, from veg-testkit:
//! prerequisites (which fail instead of skipping under CI=true), running a command, polling,
//! wall-clock time.
#![allow(unused_imports)]

pub use veg_testkit::{require, run, unix_now, wait_until};
