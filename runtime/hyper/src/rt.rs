//! hyper's runtime traits on weft: [`WeftExecutor`] and [`WeftTimer`].
//!
//! The io traits (`hyper::rt::Read`/`Write`) are implemented by weft itself
//! on `weft::net::TcpStream` and `UnixStream` (its `hyper` feature): the
//! orphan rule puts them there, and it lets them reach the streams' own
//! buffers without a second adapter.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use hyper::rt::{Executor, Sleep, Timer};

/// Spawns hyper's background futures (HTTP/2 streams, a pooled client's
/// connection drivers, the pool's idle sweeper) as weft tasks.
///
/// By default a spawned future is *detached*: a root of the cancellation
/// tree, so a request's deadline, which cancels the request's subtree, never
/// reaches a connection that outlives it in a pool.
/// [`WeftExecutor::in_current_scope`] spawns into the scope that is current
/// where each future is handed over instead (what the server wants for
/// HTTP/2 streams: they belong to their connection, which belongs to the
/// server).
#[derive(Clone)]
pub struct WeftExecutor {
    handle: Option<weft::runtime::Handle>,
    detached: bool,
}

impl WeftExecutor {
    /// Detached tasks on the runtime current at each `execute` call.
    pub fn new() -> WeftExecutor {
        WeftExecutor {
            handle: None,
            detached: true,
        }
    }

    /// Detached tasks on `handle`'s runtime (for a client used from threads
    /// that are not in a runtime).
    pub fn on(handle: weft::runtime::Handle) -> WeftExecutor {
        WeftExecutor {
            handle: Some(handle),
            detached: true,
        }
    }

    /// Tasks that are children of the scope current at each `execute` call.
    pub fn in_current_scope() -> WeftExecutor {
        WeftExecutor {
            handle: None,
            detached: false,
        }
    }
}

impl Default for WeftExecutor {
    fn default() -> Self {
        WeftExecutor::new()
    }
}

impl fmt::Debug for WeftExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeftExecutor")
            .field("has_handle", &self.handle.is_some())
            .field("detached", &self.detached)
            .finish()
    }
}

impl<F> Executor<F> for WeftExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        let mut builder = weft::task::Builder::new();
        if self.detached {
            builder = builder.detached();
        }
        // The handles are dropped: hyper's background futures report
        // through their own channels.
        match &self.handle {
            Some(handle) => drop(builder.spawn_on(fut, handle)),
            None => drop(builder.spawn(fut)),
        }
    }
}

/// hyper's timer on weft's timing wheel.
///
/// [`Timer::reset`] moves the weft sleep in place (no new sleep, no
/// allocation; see `weft::time::Sleep::reset`).
/// A sleep awaited in a cancelled scope completes at once: a connection being
/// cancelled does not wait out its timers.
#[derive(Clone, Copy, Debug, Default)]
pub struct WeftTimer;

impl WeftTimer {
    /// The timer.
    pub fn new() -> WeftTimer {
        WeftTimer
    }
}

impl Timer for WeftTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(WeftSleep(weft::time::sleep(duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(WeftSleep(weft::time::sleep_until(deadline)))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<WeftSleep>() {
            Some(mine) => mine.get_mut().0.reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// A weft sleep as hyper's `Sleep`.
struct WeftSleep(weft::time::Sleep);

impl Sleep for WeftSleep {}

impl Future for WeftSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // `Err(Cancelled)`: the scope is cancelled; the timer is over too.
        Pin::new(&mut self.get_mut().0).poll(cx).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn _assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn executor_and_timer_are_send_sync() {
        _assert_send_sync::<WeftExecutor>();
        _assert_send_sync::<WeftTimer>();
    }

    #[test]
    fn reset_moves_the_deadline_in_place() {
        let rt = weft::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        rt.block_on(async {
            let timer = WeftTimer::new();
            let start = Instant::now();
            let mut sleep = timer.sleep(Duration::from_millis(10));
            let before: *const () = (&*sleep as *const dyn Sleep).cast();
            // Registers the 10 ms timer.
            assert!(futures_poll_once(sleep.as_mut()).is_pending());
            let metrics = || weft::runtime::Handle::current().metrics();
            assert_eq!(metrics().timers_pending, 1);
            // Moving it later, many times, keeps the same sleep and its one
            // wheel entry (no lock per reset); when that entry fires early
            // the sleep registers again for the latest deadline.
            for ms in 11..=40 {
                timer.reset(&mut sleep, start + Duration::from_millis(ms));
            }
            assert_eq!(metrics().timers_pending, 1);
            assert!(futures_poll_once(sleep.as_mut()).is_pending());
            assert_eq!(metrics().timers_pending, 1);
            let after: *const () = (&*sleep as *const dyn Sleep).cast();
            assert_eq!(before, after, "reset kept the same sleep");
            sleep.as_mut().await;
            assert!(
                start.elapsed() >= Duration::from_millis(40),
                "the early firing of the old registration did not end the sleep"
            );
            // And earlier again, after it completed.
            let again = Instant::now();
            timer.reset(&mut sleep, again + Duration::from_millis(5));
            sleep.as_mut().await;
            assert!(again.elapsed() >= Duration::from_millis(5));
        });
    }

    fn futures_poll_once(mut fut: Pin<&mut dyn Sleep>) -> Poll<()> {
        let waker = std::task::Waker::noop();
        fut.as_mut().poll(&mut Context::from_waker(waker))
    }
}
