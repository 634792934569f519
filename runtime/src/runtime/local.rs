//! `LocalRuntime`: a current-thread runtime bound to the thread that built
//! it, the home of `!Send` tasks (`spawn_local`).

use std::{future::Future, marker::PhantomData, time::Duration};

use super::{dump, Handle, Runtime, RuntimeMetrics};
use crate::{cancel::SpawnOptions, context::EnterGuard, task::JoinHandle};

/// A current-thread runtime that stays on the thread that built it
/// ([`Builder::build_local`](super::Builder::build_local)), so its tasks
/// need not be `Send`: [`spawn_local`](LocalRuntime::spawn_local) here, or
/// [`weft::task::spawn_local`](crate::task::spawn_local) inside it.
///
/// Everything [`Builder::new_current_thread`](super::Builder::new_current_thread)
/// says holds, plus: the runtime is neither `Send` nor `Sync`, so it is
/// used, driven and dropped on its thread only. `block_on` through its
/// [`Handle`] on any other thread panics (that thread would poll the
/// `!Send` tasks); spawning `Send` tasks through the handle from other
/// threads works as on any runtime. This is the role tokio's
/// `LocalRuntime` (and a `LocalSet` on a current-thread runtime) plays: a
/// [`Runtime`] is `Send` and may be dropped, and its `block_on` run, on
/// any thread, which a `!Send` future cannot allow.
///
/// ```
/// use std::{cell::RefCell, rc::Rc};
/// let rt = weft::runtime::Builder::new_current_thread().build_local()?;
/// let shared = Rc::new(RefCell::new(Vec::new()));
/// let task = {
///     let shared = shared.clone();
///     rt.spawn_local(async move { shared.borrow_mut().push(1) })
/// };
/// rt.block_on(async {
///     let inner = shared.clone();
///     weft::task::spawn_local(async move { inner.borrow_mut().push(2) })
///         .await
///         .unwrap();
///     task.await.unwrap();
/// });
/// assert_eq!(*shared.borrow(), [2, 1]);
/// # Ok::<(), weft::runtime::BuildError>(())
/// ```
///
/// A `LocalRuntime` cannot leave its thread:
///
/// ```compile_fail
/// let rt = weft::runtime::Builder::new_current_thread().build_local().unwrap();
/// std::thread::spawn(move || drop(rt));
/// ```
pub struct LocalRuntime {
    runtime: Runtime,
    /// `!Send` and `!Sync`: see the type's doc.
    _thread_bound: PhantomData<*const ()>,
}

impl LocalRuntime {
    pub(crate) fn new(runtime: Runtime) -> LocalRuntime {
        LocalRuntime {
            runtime,
            _thread_bound: PhantomData,
        }
    }

    /// Runs `future` to completion on this thread, which runs the tasks,
    /// io and timers meanwhile.
    ///
    /// # Panics
    /// Inside another `block_on` or a task of a runtime.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Spawns a task that need not be `Send`; it runs during `block_on`.
    #[track_caller]
    pub fn spawn_local<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let location = std::panic::Location::caller();
        self.runtime.handle.inner.spawn_local_at(
            future,
            crate::task::Id::next(),
            &SpawnOptions::default(),
            location,
        )
    }

    /// Spawns a `Send` task; it runs during `block_on`.
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime.spawn(future)
    }

    /// Runs `f` on the blocking pool.
    #[track_caller]
    pub fn spawn_blocking<F, R>(&self, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.runtime.spawn_blocking(f)
    }

    /// A handle to this runtime (see the type's doc for what it may do on
    /// other threads).
    pub fn handle(&self) -> &Handle {
        self.runtime.handle()
    }

    /// Makes this runtime current on this thread until the guard drops.
    pub fn enter(&self) -> EnterGuard {
        self.runtime.enter()
    }

    /// A snapshot of the runtime's counters.
    pub fn metrics(&self) -> RuntimeMetrics {
        self.runtime.metrics()
    }

    /// The runtime's live tasks; see [`Handle::dump`].
    pub fn dump(&self) -> dump::TaskDump {
        self.runtime.dump()
    }

    /// The io driver the runtime runs: `Uring` or `Epoll`, never `Auto`.
    pub fn io_driver(&self) -> crate::io::Driver {
        self.runtime.io_driver()
    }

    /// Shuts down: tasks are dropped on this thread, blocking jobs get at
    /// most `timeout`. See [`Runtime::shutdown_timeout`].
    pub fn shutdown_timeout(self, timeout: Duration) -> bool {
        self.runtime.shutdown_timeout(timeout)
    }

    /// Shuts down without waiting for blocking jobs.
    pub fn shutdown_background(self) -> bool {
        self.runtime.shutdown_background()
    }
}

impl std::fmt::Debug for LocalRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRuntime").finish_non_exhaustive()
    }
}
