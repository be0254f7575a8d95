//! A timer kept for the life of a connection and moved forward for each wait, instead of a
//! fresh `tokio::time::timeout` per wait.
//!
//! Why: a `timeout` whose future is pending registers a timer in the runtime's wheel and
//! cancels it when dropped, each under the driver's lock. A registered timer whose deadline only
//! moves later is extended by one atomic exchange (tokio's `TimerEntry::reset`); the wheel
//! re-files it when its old deadline comes round. A connection's keep-alive waits are such a
//! series: each deadline is later than the last.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Duration;
use tokio::time::{sleep_until, Instant, Sleep};

/// See the module documentation. Use one per kind of wait, so that its deadlines only move
/// later (an earlier deadline is filed again, as costly as a fresh timer).
#[derive(Default)]
pub struct ReusedTimer {
    sleep: Option<Pin<Box<Sleep>>>,
}

impl ReusedTimer {
    /// `fut`'s output, or `None` when `limit` passes first, counted from when `fut` is first
    /// found waiting. `fut` is polled first: a future that is ready at once leaves the timer (and
    /// the clock) alone (a deadline moved earlier for nothing would be filed again).
    pub async fn limit<F: Future>(&mut self, limit: Duration, fut: F) -> Option<F::Output> {
        let mut fut = pin!(fut);
        let mut armed = false;
        poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            let sleep = match &mut self.sleep {
                Some(sleep) if armed => sleep,
                Some(sleep) => {
                    sleep.as_mut().reset(Instant::now() + limit);
                    sleep
                }
                empty => empty.insert(Box::pin(sleep_until(Instant::now() + limit))),
            };
            armed = true;
            sleep.as_mut().poll(cx).map(|()| None)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wait of `work` seconds limited to 5 s on `timer`: what it returned and how long it took.
    async fn wait(timer: &mut ReusedTimer, work: u64) -> (Option<u64>, Duration) {
        let started = Instant::now();
        let work = async move {
            tokio::time::sleep(Duration::from_secs(work)).await;
            work
        };
        let out = timer.limit(Duration::from_secs(5), work).await;
        (out, started.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_reused_timer_limits_each_wait_from_its_own_start() {
        let mut timer = ReusedTimer::default();
        assert_eq!(
            timer.limit(Duration::from_secs(5), async { 1 }).await,
            Some(1)
        );
        // a wait longer than its limit is cut at the limit, measured from this wait's start
        assert_eq!(wait(&mut timer, 60).await, (None, Duration::from_secs(5)));
        // after a cut the timer serves the next wait, which completes within its limit
        assert_eq!(wait(&mut timer, 3).await, (Some(3), Duration::from_secs(3)));
        // the last deadline passed while nothing waited: the next wait arms the timer again
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(wait(&mut timer, 4).await, (Some(4), Duration::from_secs(4)));
        // a deadline moved later (the earlier one still registered, 1 s away) cuts at the later
        assert_eq!(wait(&mut timer, 6).await, (None, Duration::from_secs(5)));
    }
}
