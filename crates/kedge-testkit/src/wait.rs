//! Polling a condition until it holds, with a timeout.

use std::future::Future;
use std::panic::Location;
use std::time::{Duration, Instant};

use crate::error::Timeout;

/// What a condition polled by [`wait_for`] returns: `bool`, or `Option<T>` to hand a value back.
pub trait Poll {
    /// The value [`wait_for`] returns once the condition holds.
    type Output;
    /// `Some` once the condition holds.
    fn ready(self) -> Option<Self::Output>;
}

impl Poll for bool {
    type Output = ();
    fn ready(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Poll for Option<T> {
    type Output = T;
    fn ready(self) -> Option<T> {
        self
    }
}

/// Evaluates `condition` every `poll_interval` until it returns `true` or `Some(value)`, for at most `timeout`.
///
/// The condition is evaluated at least once, and once more at the deadline. On timeout the error names the
/// source location of the call, the timeout and the number of attempts.
///
/// ```no_run
/// # async fn demo(client: kube::Client) -> Result<(), kedge_testkit::Timeout> {
/// use std::time::Duration;
/// use k8s_openapi::api::core::v1::ConfigMap;
/// let api: kube::Api<ConfigMap> = kube::Api::namespaced(client, "demo");
/// let cm = kedge_testkit::wait_for(Duration::from_secs(10), Duration::from_millis(100), || async {
///     api.get_opt("settings").await.ok().flatten()
/// })
/// .await?;
/// # let _ = cm; Ok(()) }
/// ```
#[track_caller]
pub fn wait_for<F, Fut, P>(
    timeout: Duration,
    poll_interval: Duration,
    mut condition: F,
) -> impl Future<Output = Result<P::Output, Timeout>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = P>,
    P: Poll,
{
    let location = Location::caller().to_string();
    async move {
        let deadline = Instant::now() + timeout;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            if let Some(value) = condition().await.ready() {
                return Ok(value);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Timeout {
                    location,
                    timeout,
                    attempts,
                });
            }
            tokio::time::sleep(poll_interval.min(deadline - now)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_value_once_ready() {
        let mut n = 0;
        let got = wait_for(Duration::from_secs(5), Duration::from_millis(1), || {
            n += 1;
            let v = n;
            async move { (v >= 3).then_some(v) }
        })
        .await;
        assert_eq!(got.ok(), Some(3));
    }

    #[tokio::test]
    async fn times_out_with_location() {
        let err = wait_for(
            Duration::from_millis(30),
            Duration::from_millis(5),
            || async { false },
        )
        .await
        .expect_err("must time out");
        assert!(err.location.contains("wait.rs"), "{err}");
        assert!(err.attempts >= 2, "{err}");
        assert!(err.to_string().contains("was not met within 30ms"), "{err}");
    }
}
