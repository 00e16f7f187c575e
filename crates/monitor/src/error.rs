//! Why the monitor stopped.

/// A failure that ends `veg monitor` (everything else is logged and retried).
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The NB could not be reached at start.
    #[error("OVN NB")]
    Nb(#[from] veg_ovsdb::Error),
    /// The NB client's task ended (it reconnects by itself, so this is not a lost connection).
    #[error("the OVN NB client stopped")]
    NbClosed,
    /// The embedded BFD daemon failed.
    #[error("BFD daemon")]
    Bfd(#[from] veg_bfd::Error),
    /// The embedded BFD daemon ended without an error before it was told to (a panic).
    #[error("the BFD daemon stopped")]
    BfdStopped,
}

impl MonitorError {
    /// A bounded label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            MonitorError::Nb(_) => "nb",
            MonitorError::NbClosed => "nb_closed",
            MonitorError::Bfd(_) => "bfd",
            MonitorError::BfdStopped => "bfd_stopped",
        }
    }
}
