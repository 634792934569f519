//! `spawn_blocking`: a task whose future runs one closure, scheduled onto the
//! blocking pool instead of a worker.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use super::BlockingPool;
use crate::task::{self, Id, JoinHandle, Notified, RawTask, Schedule, Task};

/// The future of a blocking task: runs the closure on its only poll.
struct BlockingTask<F>(Option<F>);

impl<F> Unpin for BlockingTask<F> {}

impl<F: FnOnce() -> R, R> Future for BlockingTask<F> {
    type Output = R;

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<R> {
        let f = self
            .0
            .take()
            .expect("a blocking task is polled once: it never returns Pending");
        Poll::Ready(f())
    }
}

#[derive(Clone)]
struct BlockingSchedule {
    pool: BlockingPool,
}

/// Runs the task if the pool gets to it; cancels it if the pool drops the
/// job unrun (shutdown), so its `JoinHandle` never waits forever.
struct RunOnce(Option<Notified>);

impl Drop for RunOnce {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.shutdown();
        }
    }
}

impl Schedule for BlockingSchedule {
    fn schedule(&self, task: Notified) {
        let mut once = RunOnce(Some(task));
        let job = Box::new(move || {
            if let Some(task) = once.0.take() {
                task.run();
            }
        });
        // On refusal the job (and with it the task) is dropped: cancelled.
        let _ = self.pool.spawn(job);
    }

    fn release(&self, _task: RawTask) -> Option<Task> {
        // Blocking tasks are not in the runtime's registry: shutdown reaches
        // them through the pool, which runs or cancels every job it took.
        None
    }
}

#[track_caller]
pub(crate) fn spawn_blocking<F, R>(pool: &BlockingPool, f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let schedule = BlockingSchedule { pool: pool.clone() };
    // No node: a blocking task is not part of the cancellation tree.
    let (task, notified, join, _no_slot) = task::new_task(
        BlockingTask(Some(f)),
        schedule.clone(),
        Id::next(),
        false,
        std::panic::Location::caller(),
    );
    // No registry holds it.
    drop(task);
    schedule.schedule(notified);
    join
}
