//! The adapters the run loop is driven by: `kube` (watches in; server-side apply, events,
//! finalizer and Lease out) for a real cluster, and `files` (manifests in, JSON decisions
//! out) for the embedded lab.

pub mod files;
pub mod kube;
