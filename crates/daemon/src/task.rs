//! A spawned task that ends with its owner (holo's `Task`): dropping the handle aborts it, so
//! no listener or watcher outlives the daemon that started it.

use std::future::Future;

use tokio::task::JoinHandle;

/// A spawned task, aborted when dropped.
#[derive(Debug)]
pub struct Task(JoinHandle<()>);

impl Task {
    /// Spawns `future` on the current runtime.
    pub fn spawn(future: impl Future<Output = ()> + Send + 'static) -> Task {
        Task(tokio::spawn(future))
    }

    /// Whether the task has ended (returned or panicked).
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

impl From<JoinHandle<()>> for Task {
    fn from(handle: JoinHandle<()>) -> Task {
        Task(handle)
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dropping_the_handle_aborts_the_task() {
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<()>(1);
        let task = Task::spawn(async move {
            let _sender = sender;
            std::future::pending::<()>().await;
        });
        assert!(!task.is_finished());
        drop(task);
        // The sender is dropped only when the task is aborted.
        assert_eq!(receiver.recv().await, None);
    }
}
