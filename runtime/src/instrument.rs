//! `tracing` integration (cargo feature `tracing`; without it none of this
//! is compiled, and no call site remains).
//!
//! - **A span per task**, `task` (target `weft::task`, level DEBUG), made
//!   at spawn with the fields `task.id`, `task.name` (if named) and
//!   `task.parent` (the id of the task that spawned it, if any), and
//!   entered around each poll of the task, on whichever worker runs it.
//!   Its parent span is the one current at the spawn (the spawning task's,
//!   inside a task). Blocking tasks get none.
//! - **Cancellation** (target `weft::cancel`, DEBUG): one event per task or
//!   scope a cancel reaches, with `cause`, `origin` and `reason`; for a
//!   task, inside its span (`task.id` is also a field).
//! - **Deadline expiry** (target `weft::cancel`, DEBUG): when a deadline
//!   cancels its scope (a task's or a `timeout`'s), with the deadline's
//!   lateness.
//! - **Stuck polls** (target `weft::task`, WARN): [`stuck_poll`].
//!
//! The cancel events are emitted where the cancel happens, under the
//! cancelled node's lock: a subscriber must not cancel weft scopes from
//! inside `event`.

use std::{
    panic::Location,
    time::{Duration, Instant},
};

use tracing::Span;

use crate::{
    cancel::{Cause, SpawnOptions},
    context,
    task::{Id, RawTask},
};

/// Gives a task about to be scheduled (not shared yet) its span.
pub(crate) fn attach_span(task: RawTask, opts: &SpawnOptions) {
    let parent = context::try_id().map(Id::as_u64);
    let span = tracing::debug_span!(
        target: "weft::task",
        "task",
        task.id = task.id().as_u64(),
        task.name = opts.name.as_deref(),
        task.parent = parent,
    );
    // Set once: the task was just allocated.
    let _ = task.header().span.set(span);
}

/// Runs `f` with the span of `task` (if it has one), the explicit parent
/// of the events `f` emits. The caller keeps the task alive meanwhile.
fn with_span(task: Option<RawTask>, f: impl FnOnce(Option<&Span>)) {
    match task {
        Some(task) => f(task.header().span.get()),
        None => f(None),
    }
}

/// A cancel reached a task (`task`: `Some` while it is alive) or scope.
pub(crate) fn cancelled(
    task: Option<RawTask>,
    cause: Cause,
    origin: Cause,
    reason: Option<&str>,
    deadline: Option<Instant>,
) {
    if cause == Cause::Deadline {
        if let Some(deadline) = deadline {
            deadline_expired(task, deadline);
        }
    }
    let id = task.map(|t| t.id().as_u64());
    with_span(task, |span| match span {
        Some(span) => tracing::event!(
            target: "weft::cancel",
            parent: span,
            tracing::Level::DEBUG,
            task.id = id,
            cause = ?cause,
            origin = ?origin,
            reason,
            "task cancelled",
        ),
        None => tracing::event!(
            target: "weft::cancel",
            tracing::Level::DEBUG,
            task.id = id,
            cause = ?cause,
            origin = ?origin,
            reason,
            "scope cancelled",
        ),
    });
}

/// A deadline cancelled its scope: a task's (`task`, while it is alive)
/// or a nested one's.
pub(crate) fn deadline_expired(task: Option<RawTask>, deadline: Instant) {
    let late = Instant::now().saturating_duration_since(deadline);
    let id = task.map(|t| t.id().as_u64());
    with_span(task, |span| match span {
        Some(span) => tracing::event!(
            target: "weft::cancel",
            parent: span,
            tracing::Level::DEBUG,
            task.id = id,
            late_us = late.as_micros() as u64,
            "deadline expired",
        ),
        None => tracing::event!(
            target: "weft::cancel",
            tracing::Level::DEBUG,
            task.id = id,
            late_us = late.as_micros() as u64,
            "deadline expired",
        ),
    });
}

/// A poll has run longer than the stuck-poll threshold and is still
/// running: WARN with the task's id, name, spawn location and how long
/// (from the watchdog, `scheduler/monitor.rs`, beside the hook's report).
pub(crate) fn stuck_poll(
    id: Id,
    name: Option<&str>,
    location: Option<&'static Location<'static>>,
    running_for: Duration,
) {
    tracing::event!(
        target: "weft::task",
        tracing::Level::WARN,
        task.id = id.as_u64(),
        task.name = name,
        task.location = location.map(tracing::field::display),
        running_ms = running_for.as_millis() as u64,
        "poll is stuck",
    );
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc, Mutex,
    };

    use tracing::{
        field::{Field, Visit},
        span, Event, Level, Metadata, Subscriber,
    };

    use super::*;

    /// Each event's target, level and fields as text.
    #[derive(Default)]
    struct Events {
        seen: Mutex<Vec<(String, Level, String)>>,
        spans: AtomicU64,
    }

    /// The subscriber: a handle to the events it keeps.
    struct Sink(Arc<Events>);

    struct Text(String);

    impl Visit for Text {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0 += &format!("{}={:?} ", field.name(), value);
        }
    }

    impl Subscriber for Sink {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
            span::Id::from_u64(self.0.spans.fetch_add(1, Relaxed) + 1)
        }
        fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
        fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut text = Text(String::new());
            event.record(&mut text);
            let meta = event.metadata();
            let entry = (meta.target().to_owned(), *meta.level(), text.0);
            self.0.seen.lock().unwrap().push(entry);
        }
        fn enter(&self, _: &span::Id) {}
        fn exit(&self, _: &span::Id) {}
    }

    #[test]
    fn a_stuck_poll_is_a_warning_naming_the_task() {
        let events = Arc::new(Events::default());
        let location = Location::caller();
        tracing::subscriber::with_default(Sink(events.clone()), || {
            stuck_poll(
                Id::next(),
                Some("spinner"),
                Some(location),
                Duration::from_millis(25),
            );
            stuck_poll(Id::next(), None, None, Duration::from_millis(7));
        });
        let seen = events.seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        let (target, level, text) = &seen[0];
        assert_eq!(target, "weft::task");
        assert_eq!(*level, Level::WARN);
        assert!(text.contains("task.name=\"spinner\""), "{text}");
        assert!(text.contains("running_ms=25"), "{text}");
        assert!(text.contains("instrument.rs"), "the location: {text}");
        assert!(text.contains("poll is stuck"), "{text}");
        assert!(!seen[1].2.contains("task.name"), "{}", seen[1].2);
        assert!(seen[1].2.contains("running_ms=7"), "{}", seen[1].2);
    }
}
