//! SIGTERM (what the kubelet sends) or SIGINT (a terminal's Ctrl-C) as one future, for the
//! `run(…, shutdown)` of every daemon (mini-redis).

use std::future::Future;

use tokio::signal::unix::{SignalKind, signal};

/// A future that completes on the first SIGTERM or SIGINT. The handlers are installed now, so
/// a signal that arrives before the future is polled is not lost.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}
