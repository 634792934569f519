//! The steps every channel wait shares: the scope checks of a weft await
//! point, and driving a wait from a thread outside the runtime.
//!
//! A channel's wait future, when polled:
//! 1. spends a unit of the coop budget;
//! 2. [`scope_cancelled`]: a cancelled scope (or one past its deadline)
//!    ends the wait at once, before anything is taken from the channel;
//! 3. tries the channel's fast path;
//! 4. [`before_wait`]: arms the scope's deadline timer and checks again;
//! 5. registers its waker and returns `Pending`.
//!
//! No cancellation node is made for the wait (as for `sleep`, the socket
//! waits and the locks: "Waking a cancelled waiter" in `semaphore.rs`): a
//! task's node, whenever it is made (by `JoinHandle::cancel`, say), wakes
//! the task; a `cancel::scope` wakes its future; and a `timeout` whose
//! node was never made ends the wait by dropping it, which takes nothing
//! from the channel. Making one here cost a node (from the runtime's block
//! cache) and its link into the tree per wait under a `timeout`.

use std::{
    future::Future,
    pin::pin,
    ptr::NonNull,
    sync::Arc as StdArc,
    task::{Context, Poll, Wake, Waker},
};

use crate::{
    cancel::{self, Cancelled},
    context,
    facade::{lock, Condvar, Mutex},
    sync::wait_list::{WaitList, Waiter},
};

/// Step 2: the scope's cancellation, if any. Arms no timer.
#[inline]
pub(crate) fn scope_cancelled() -> Option<Cancelled> {
    cancel::poll_cancelled(None, false)
}

/// Step 4: the task is about to wait. Arms the deadline timer once, and
/// returns the cancellation if the scope is (now) cancelled. Makes no node
/// (module docs).
#[inline]
pub(crate) fn before_wait() -> Option<Cancelled> {
    cancel::poll_cancelled(None, true)
}

/// Wakes a thread blocked in [`block_on`].
struct ThreadSignal {
    woken: Mutex<bool>,
    cond: Condvar,
}

impl Wake for ThreadSignal {
    fn wake(self: StdArc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &StdArc<Self>) {
        *lock(&self.woken) = true;
        self.cond.notify_one();
    }
}

/// Drives `future` on this thread, blocking it between polls: the
/// `blocking_*` methods of the channels. Outside any task nothing cancels
/// the wait; it ends when the channel does.
///
/// # Panics
/// On a weft worker thread or inside `block_on` (it would block a thread
/// the runtime needs).
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    let _guard = context::enter_block_on();
    let signal = StdArc::new(ThreadSignal {
        woken: Mutex::new(false),
        cond: Condvar::new(),
    });
    let waker = Waker::from(signal.clone());
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        let mut woken = lock(&signal.woken);
        while !*woken {
            woken = match signal.cond.wait(woken) {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
        }
        *woken = false;
    }
}

/// A wait future's node in a list of plain wake-ups (`WaitList<()>`): the
/// channel wakes every linked node (it unlinks them) when something changes,
/// and the future re-checks the channel when polled.
///
/// The owner must call [`leave`](Self::leave) with the list's lock before
/// the node goes away (the futures do it in their `Drop`), and must not move
/// it while linked (the futures holding it are `!Unpin` and only reach it
/// pinned).
pub(crate) struct WaitNode {
    node: std::cell::UnsafeCell<Waiter<()>>,
    /// Linked at our last look (a waker may have unlinked it since).
    linked: bool,
}

// SAFETY: the node is only touched under its list's lock.
unsafe impl Send for WaitNode {}
// SAFETY: `&WaitNode` reaches nothing.
unsafe impl Sync for WaitNode {}

impl WaitNode {
    pub(crate) fn new() -> WaitNode {
        WaitNode {
            node: std::cell::UnsafeCell::new(Waiter::new(())),
            linked: false,
        }
    }

    fn ptr(&self) -> NonNull<Waiter<()>> {
        // SAFETY: a pointer to our own field is never null.
        unsafe { NonNull::new_unchecked(self.node.get()) }
    }

    /// Links the node (if it is not linked) with `waker`. `list` is the
    /// guarded list of the one lock this node is ever used with.
    ///
    /// # Safety
    /// The node stays where it is until [`leave`](Self::leave) is called
    /// with the same lock.
    pub(crate) unsafe fn link(&mut self, list: &mut WaitList<()>, waker: &Waker) {
        // SAFETY: we hold the list's lock (the caller has `&mut` of the
        // guarded list); the node is ours and pinned per the caller.
        unsafe {
            let node = &mut *self.node.get();
            node.set_waker(waker);
            if !node.is_queued() {
                list.push_back(self.ptr());
            }
        }
        self.linked = true;
    }

    /// Unlinks the node if it is linked.
    pub(crate) fn leave(&mut self, lock_of_list: &Mutex<WaitList<()>>) {
        if self.linked {
            self.leave_locked(&mut lock(lock_of_list));
        }
    }

    /// True if the node may be linked (to skip taking the lock).
    pub(crate) fn is_linked(&self) -> bool {
        self.linked
    }

    /// Unlinks the node if it is linked into `list`, whose lock the caller
    /// holds (the one list this node is ever used with).
    pub(crate) fn leave_locked(&mut self, list: &mut WaitList<()>) {
        if !self.linked {
            return;
        }
        self.linked = false;
        // SAFETY: our node, only ever linked into this list, under its lock.
        unsafe { list.remove(self.ptr()) };
    }
}

impl std::fmt::Debug for WaitNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitNode")
            .field("linked", &self.linked)
            .finish()
    }
}

/// Unlinks every node of `list` and wakes it. Called under the list's
/// lock: a wake only queues the task, so this allocates nothing and cannot
/// re-enter the lock.
pub(crate) fn wake_all(list: &mut WaitList<()>) {
    list.drain(|w| {
        if let Some(waker) = w.waker.take() {
            waker.wake();
        }
    });
}

#[cfg(all(test, not(weft_loom), not(weft_shuttle)))]
mod tests {
    use std::{
        future::{poll_fn, Future},
        pin::{pin, Pin},
        task::Poll,
        time::Duration,
    };

    use crate::{
        sync::{broadcast, mpsc, oneshot, watch},
        time::{timeout, Timeout},
    };

    const LONG: Duration = Duration::from_secs(60);

    /// Polls `t` once: it must wait, without making its scope node (a
    /// node, even from the runtime's block cache, per wait under a
    /// `timeout`, and a link into the tree); then it completes.
    async fn waits_without_a_node<F: Future>(what: &str, t: Pin<&mut Timeout<F>>) {
        let mut t = t;
        let first = poll_fn(|cx| Poll::Ready(t.as_mut().poll(cx).is_pending())).await;
        assert!(first, "{what}: the wait did not wait");
        assert!(
            !t.has_node(),
            "{what}: the wait made the timeout's scope node"
        );
    }

    #[test]
    fn channel_waits_under_a_timeout_make_no_scope_node() {
        let rt = crate::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        rt.block_on(async {
            let (tx, rx) = oneshot::channel::<u32>();
            let mut t = pin!(timeout(LONG, rx));
            waits_without_a_node("oneshot recv", t.as_mut()).await;
            tx.send(1).unwrap();
            assert_eq!(t.await, Ok(Ok(1)));

            let (tx, mut rx) = mpsc::channel::<u32>(1);
            {
                let mut t = pin!(timeout(LONG, rx.recv()));
                waits_without_a_node("mpsc recv", t.as_mut()).await;
                tx.send(2).await.unwrap();
                assert_eq!(t.await, Ok(Ok(2)));
            }
            let mut t = pin!(timeout(LONG, tx.send(3)));
            assert_eq!(t.as_mut().await, Ok(Ok(())));
            let mut t = pin!(timeout(LONG, tx.send(4)));
            waits_without_a_node("mpsc send", t.as_mut()).await;
            assert_eq!(rx.recv().await, Ok(3));
            assert_eq!(t.await, Ok(Ok(())));

            let (tx, mut rx) = mpsc::unbounded_channel::<u32>();
            let mut t = pin!(timeout(LONG, rx.recv()));
            waits_without_a_node("unbounded recv", t.as_mut()).await;
            tx.send(5).unwrap();
            assert_eq!(t.await, Ok(Ok(5)));

            let (tx, mut rx) = watch::channel(0u32);
            let mut t = pin!(timeout(LONG, rx.changed()));
            waits_without_a_node("watch changed", t.as_mut()).await;
            tx.send(6).unwrap();
            assert!(t.await.unwrap().is_ok());

            let (tx, mut rx) = broadcast::channel::<u32>(4);
            let mut t = pin!(timeout(LONG, rx.recv()));
            waits_without_a_node("broadcast recv", t.as_mut()).await;
            tx.send(7).unwrap();
            assert_eq!(t.await.unwrap().unwrap(), 7);
        });
    }
}
