//! NB apply: desired rows (from [`crate::plan`]) against the client's replica → the minimal
//! operations, committed as one transaction per gateway (or per VPC BFD port); cleanup of
//! every row a gateway owns. Rows are written and read through veg-ovsdb's typed tables.

pub mod bfd_port;
pub mod nb;
