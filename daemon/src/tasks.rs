//! The daemons' task supervision: every long-lived task is spawned here under a name,
//! and the main loop waits on [`Tasks::ended`] beside its signals. A task is meant to
//! run until shutdown, so one that returns, fails or panics before then is an error
//! that names it: the daemon exits non-zero and the service manager restarts it (the
//! kernel state it manages stays in place meanwhile). At shutdown, [`Tasks::join_all`]
//! waits for every task to finish and reports the first that failed.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;

use tokio::task::{Id, JoinError, JoinSet};

/// A task's error, whatever its layer's type (an `anyhow::Error` converts).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a supervised task ended.
#[derive(Debug)]
pub enum How {
    /// It returned `Ok` while it should still have been running.
    Returned,
    /// It returned an error.
    Failed(BoxError),
    /// It panicked.
    Panicked(String),
    /// It was aborted.
    Cancelled,
}

/// A supervised task that ended, and how.
#[derive(Debug, thiserror::Error)]
#[error("the {name} task {how}")]
pub struct TaskEnded {
    pub name: &'static str,
    pub how: How,
}

impl fmt::Display for How {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            How::Returned => f.write_str("ended on its own"),
            How::Failed(e) => write!(f, "failed: {}", chain(e.as_ref())),
            How::Panicked(p) => write!(f, "panicked: {p}"),
            How::Cancelled => f.write_str("was cancelled"),
        }
    }
}

/// An error and its sources, as `anyhow`'s `{:#}` prints them.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The named tasks of one daemon.
#[derive(Default)]
pub struct Tasks {
    set: JoinSet<Result<(), BoxError>>,
    names: HashMap<Id, &'static str>,
}

impl Tasks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns a task that runs until shutdown (its cancellation token) and may fail.
    pub fn spawn<F, E>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let h = self
            .set
            .spawn(async move { task.await.map_err(Into::into) });
        self.names.insert(h.id(), name);
    }

    /// Spawns a task that runs until shutdown and has no error of its own.
    pub fn spawn_infallible<F>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawn(name, async move {
            task.await;
            Ok::<(), std::convert::Infallible>(())
        });
    }

    /// How many tasks still run.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// The first task to end, however it ended. Pending forever when there is none, so
    /// that it can sit in a `select!` beside the signals. Cancel-safe.
    pub async fn ended(&mut self) -> TaskEnded {
        match self.set.join_next_with_id().await {
            Some(r) => self.describe(r),
            None => std::future::pending().await,
        }
    }

    /// At shutdown, once the tasks' token is cancelled: waits for every task, and
    /// returns the first that failed or panicked (one that returned is what shutdown
    /// asks of it).
    pub async fn join_all(mut self) -> Result<(), TaskEnded> {
        let mut first = None;
        while let Some(r) = self.set.join_next_with_id().await {
            let e = self.describe(r);
            if !matches!(e.how, How::Returned) && first.is_none() {
                first = Some(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn describe(&mut self, r: Result<(Id, Result<(), BoxError>), JoinError>) -> TaskEnded {
        let (id, how) = match r {
            Ok((id, Ok(()))) => (id, How::Returned),
            Ok((id, Err(e))) => (id, How::Failed(e)),
            Err(e) => {
                let id = e.id();
                if e.is_panic() {
                    (id, How::Panicked(panic_text(e)))
                } else {
                    (id, How::Cancelled)
                }
            }
        };
        let name = self.names.remove(&id).unwrap_or("unnamed");
        TaskEnded { name, how }
    }
}

fn panic_text(e: JoinError) -> String {
    let p = e.into_panic();
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio_util::sync::CancellationToken;

    async fn until(cancel: CancellationToken) -> Result<(), std::io::Error> {
        cancel.cancelled().await;
        Ok(())
    }

    #[tokio::test]
    async fn a_task_that_returns_before_shutdown_is_named() {
        let cancel = CancellationToken::new();
        let mut t = Tasks::new();
        t.spawn("applier", until(cancel.clone()));
        t.spawn_infallible("push API", async {});
        let e = t.ended().await;
        assert_eq!(e.name, "push API");
        assert!(matches!(e.how, How::Returned));
        assert_eq!(e.to_string(), "the push API task ended on its own");
        assert_eq!(t.len(), 1, "the other task still runs");
    }

    #[tokio::test]
    async fn a_failed_task_carries_its_error_and_its_causes() {
        let mut t = Tasks::new();
        t.spawn("control socket", async {
            let io = std::io::Error::other("address in use");
            Err(Outer(io))
        });
        let e = t.ended().await;
        assert_eq!(
            e.to_string(),
            "the control socket task failed: binding: address in use"
        );
    }

    #[derive(Debug, thiserror::Error)]
    #[error("binding")]
    struct Outer(#[source] std::io::Error);

    #[tokio::test]
    async fn a_panic_is_caught_and_named() {
        let mut t = Tasks::new();
        t.spawn_infallible("applier", async { panic!("state file gone") });
        let e = t.ended().await;
        assert_eq!(e.name, "applier");
        assert_eq!(e.to_string(), "the applier task panicked: state file gone");
    }

    #[tokio::test]
    async fn ended_waits_while_every_task_runs() {
        let cancel = CancellationToken::new();
        let mut t = Tasks::new();
        t.spawn("a", until(cancel.clone()));
        t.spawn("b", until(cancel.clone()));
        let waited = tokio::time::timeout(Duration::from_millis(50), t.ended()).await;
        assert!(waited.is_err(), "a task ended: {waited:?}");
        // Shutdown: every task returns, which is no error.
        cancel.cancel();
        t.join_all().await.expect("a clean shutdown");
    }

    #[tokio::test]
    async fn an_empty_set_never_ends() {
        let mut t = Tasks::new();
        let waited = tokio::time::timeout(Duration::from_millis(20), t.ended()).await;
        assert!(waited.is_err());
    }

    #[tokio::test]
    async fn join_all_reports_the_task_that_failed_at_shutdown() {
        let cancel = CancellationToken::new();
        let mut t = Tasks::new();
        t.spawn("sampler", until(cancel.clone()));
        let c = cancel.clone();
        t.spawn("announcer", async move {
            c.cancelled().await;
            Err(std::io::Error::other("withdrawing failed"))
        });
        cancel.cancel();
        let e = t.join_all().await.expect_err("the announcer failed");
        assert_eq!(e.name, "announcer");
        assert!(e.to_string().contains("withdrawing failed"), "{e}");
    }
}
