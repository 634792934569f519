//! The `tracing` feature: a span per task (id, name, parent) entered around
//! each of its polls on the workers; events for cancellation (cause,
//! origin, reason, inside the cancelled task's span) and for deadline
//! expiry. A small recording subscriber, installed once for the binary
//! (the workers are other threads), keeps everything; each test looks
//! only at the tasks it spawned.
//!
//! Run with `cargo test -p weft --features tracing --test tracing`.

mod common;

use std::{
    collections::HashMap,
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Mutex, OnceLock,
    },
    time::Duration,
};

use common::{block_on_bounded, rt, LIMIT};
use tracing::{
    field::{Field, Visit},
    span, Event, Level, Metadata, Subscriber,
};
use weft::task::{Builder, Id};

#[derive(Debug, Clone, Default)]
struct SpanRec {
    name: String,
    target: String,
    fields: HashMap<String, String>,
    /// The span current when it was made (contextual parent), or explicit.
    parent: Option<u64>,
    /// Times entered, and on how many distinct threads.
    entered: usize,
    threads: Vec<std::thread::ThreadId>,
}

#[derive(Debug, Clone)]
struct EventRec {
    target: String,
    level: Level,
    fields: HashMap<String, String>,
    /// The explicit parent, else the span current on the emitting thread.
    span: Option<u64>,
}

#[derive(Default)]
struct Recorder {
    next: AtomicU64,
    spans: Mutex<HashMap<u64, SpanRec>>,
    events: Mutex<Vec<EventRec>>,
}

thread_local! {
    static STACK: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

fn current() -> Option<u64> {
    STACK.with(|s| s.borrow().last().copied())
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, attrs: &span::Attributes<'_>) -> span::Id {
        let id = self.next.fetch_add(1, Relaxed) + 1;
        let mut rec = SpanRec {
            name: attrs.metadata().name().to_owned(),
            target: attrs.metadata().target().to_owned(),
            parent: if attrs.is_contextual() {
                current()
            } else {
                attrs.parent().map(span::Id::into_u64)
            },
            ..SpanRec::default()
        };
        attrs.record(&mut Fields(&mut rec.fields));
        self.spans.lock().unwrap().insert(id, rec);
        span::Id::from_u64(id)
    }

    fn record(&self, span: &span::Id, values: &span::Record<'_>) {
        if let Some(rec) = self.spans.lock().unwrap().get_mut(&span.into_u64()) {
            values.record(&mut Fields(&mut rec.fields));
        }
    }

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        let span = if event.is_contextual() {
            current()
        } else {
            event.parent().map(span::Id::into_u64)
        };
        self.events.lock().unwrap().push(EventRec {
            target: event.metadata().target().to_owned(),
            level: *event.metadata().level(),
            fields,
            span,
        });
    }

    fn enter(&self, span: &span::Id) {
        STACK.with(|s| s.borrow_mut().push(span.into_u64()));
        if let Some(rec) = self.spans.lock().unwrap().get_mut(&span.into_u64()) {
            rec.entered += 1;
            let me = std::thread::current().id();
            if !rec.threads.contains(&me) {
                rec.threads.push(me);
            }
        }
    }

    fn exit(&self, span: &span::Id) {
        STACK.with(|s| {
            let mut s = s.borrow_mut();
            if let Some(pos) = s.iter().rposition(|id| *id == span.into_u64()) {
                s.remove(pos);
            }
        });
    }
}

/// The binary's subscriber (global: the workers are other threads).
fn recorder() -> &'static Recorder {
    static RECORDER: OnceLock<&'static Recorder> = OnceLock::new();
    RECORDER.get_or_init(|| {
        let recorder: &'static Recorder = Box::leak(Box::default());
        struct Global(&'static Recorder);
        impl Subscriber for Global {
            fn enabled(&self, m: &Metadata<'_>) -> bool {
                self.0.enabled(m)
            }
            fn new_span(&self, a: &span::Attributes<'_>) -> span::Id {
                self.0.new_span(a)
            }
            fn record(&self, s: &span::Id, v: &span::Record<'_>) {
                self.0.record(s, v)
            }
            fn record_follows_from(&self, a: &span::Id, b: &span::Id) {
                self.0.record_follows_from(a, b)
            }
            fn event(&self, e: &Event<'_>) {
                self.0.event(e)
            }
            fn enter(&self, s: &span::Id) {
                self.0.enter(s)
            }
            fn exit(&self, s: &span::Id) {
                self.0.exit(s)
            }
        }
        tracing::subscriber::set_global_default(Global(recorder))
            .expect("the only global subscriber of this binary");
        recorder
    })
}

/// The span of the task with `id`, and its record id.
fn task_span(id: Id) -> Option<(u64, SpanRec)> {
    let id = id.as_u64().to_string();
    recorder()
        .spans
        .lock()
        .unwrap()
        .iter()
        .find(|(_, s)| s.name == "task" && s.fields.get("task.id") == Some(&id))
        .map(|(k, s)| (*k, s.clone()))
}

fn events_where(f: impl Fn(&EventRec) -> bool) -> Vec<EventRec> {
    recorder()
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| f(e))
        .cloned()
        .collect()
}

#[test]
fn each_task_has_a_span_with_id_name_and_parent_entered_around_its_polls() {
    recorder();
    let rt = rt(2);
    let (parent_id, child_id) = block_on_bounded(&rt, async {
        let parent = Builder::new().name("traced-parent").spawn(async {
            let child = Builder::new().name("traced-child").spawn(async {
                // Two polls at least: one before the sleep, one after.
                weft::time::sleep(Duration::from_millis(5)).await.unwrap();
                weft::task::id()
            });
            let child_id = child.await.unwrap();
            (weft::task::id(), child_id)
        });
        parent.await.unwrap()
    });

    let (parent_key, parent) = task_span(parent_id).expect("the parent task has a span");
    assert_eq!(parent.target, "weft::task");
    assert_eq!(parent.fields["task.name"], "traced-parent");
    assert!(
        !parent.fields.contains_key("task.parent"),
        "spawned from block_on, outside any task: {:?}",
        parent.fields
    );
    assert!(parent.entered >= 1);

    let (_, child) = task_span(child_id).expect("the child task has a span");
    assert_eq!(child.fields["task.name"], "traced-child");
    assert_eq!(child.fields["task.parent"], parent_id.as_u64().to_string());
    assert_eq!(
        child.parent,
        Some(parent_key),
        "spawned inside the parent's poll: its span is the parent span"
    );
    assert!(child.entered >= 2, "entered per poll: {}", child.entered);
    let main = std::thread::current().id();
    assert!(
        !child.threads.contains(&main),
        "polled on the workers, not the test thread"
    );

    // An unnamed task has no name field.
    let id = block_on_bounded(&rt, rt.spawn(async { weft::task::id() })).unwrap();
    let (_, unnamed) = task_span(id).expect("a span");
    assert!(!unnamed.fields.contains_key("task.name"));
}

#[test]
fn cancellation_events_carry_cause_origin_and_reason_inside_the_task_span() {
    recorder();
    let rt = rt(2);
    let (parent_id, child_id) = block_on_bounded(&rt, async {
        let (tx, rx) = weft::sync::oneshot::channel();
        let parent = Builder::new().name("cancel-parent").spawn(async move {
            let child = weft::spawn(async { weft::cancel::cancelled().await });
            tx.send(child.id()).unwrap();
            let seen = weft::cancel::cancelled().await;
            // Collect the child, which saw the same cancel.
            let limit = LIMIT;
            let child_saw = weft::cancel::shield(limit, child).await.unwrap().unwrap();
            (seen, child_saw)
        });
        let child_id = rx.await.unwrap();
        weft::time::sleep(Duration::from_millis(5)).await.unwrap();
        assert!(parent.cancel_with("enough"));
        let id = parent.id();
        let (seen, child_saw) = parent.await.unwrap();
        assert_eq!(seen.reason(), Some("enough"));
        assert_eq!(child_saw.origin(), weft::cancel::Cause::Explicit);
        (id, child_id)
    });

    let (parent_key, _) = task_span(parent_id).unwrap();
    let (child_key, _) = task_span(child_id).unwrap();
    let cancel_of = |id: Id| {
        let id = id.as_u64().to_string();
        events_where(|e| {
            e.target == "weft::cancel"
                && e.fields.get("message").map(String::as_str) == Some("task cancelled")
                && e.fields.get("task.id") == Some(&id)
        })
    };
    let parent_events = cancel_of(parent_id);
    assert_eq!(
        parent_events.len(),
        1,
        "one event per cancel: {parent_events:?}"
    );
    let e = &parent_events[0];
    assert_eq!(e.level, Level::DEBUG);
    assert_eq!(e.fields["cause"], "Explicit");
    assert_eq!(e.fields["origin"], "Explicit");
    assert_eq!(e.fields["reason"], "enough");
    assert_eq!(e.span, Some(parent_key), "inside the cancelled task's span");

    let child_events = cancel_of(child_id);
    assert_eq!(child_events.len(), 1, "{child_events:?}");
    let e = &child_events[0];
    assert_eq!(e.fields["cause"], "Parent");
    assert_eq!(e.fields["origin"], "Explicit");
    assert_eq!(e.span, Some(child_key));
}

#[test]
fn a_deadline_that_cancels_reports_its_expiry() {
    recorder();
    let rt = rt(2);
    let id = block_on_bounded(&rt, async {
        let task = Builder::new()
            .name("deadline-task")
            .timeout(Duration::from_millis(20))
            .spawn(async {
                let err = weft::time::sleep(LIMIT).await.unwrap_err();
                assert!(err.is_deadline());
                weft::task::id()
            });
        task.await.unwrap()
    });
    let (key, _) = task_span(id).unwrap();
    let idtext = id.as_u64().to_string();
    let expired = events_where(|e| {
        e.fields.get("message").map(String::as_str) == Some("deadline expired")
            && e.fields.get("task.id") == Some(&idtext)
    });
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!(expired[0].target, "weft::cancel");
    assert_eq!(expired[0].span, Some(key));
    let late: u64 = expired[0].fields["late_us"].parse().unwrap();
    assert!(late < LIMIT.as_micros() as u64);
    let cancelled = events_where(|e| {
        e.fields.get("message").map(String::as_str) == Some("task cancelled")
            && e.fields.get("task.id") == Some(&idtext)
    });
    assert_eq!(cancelled.len(), 1);
    assert_eq!(cancelled[0].fields["cause"], "Deadline");

    // A `timeout` whose scope never became a node reports its expiry in
    // the span of the task it ran in.
    let id = block_on_bounded(&rt, async { rt_spawn_timeout().await });
    let (key, _) = task_span(id).unwrap();
    let in_task = events_where(|e| {
        e.fields.get("message").map(String::as_str) == Some("deadline expired")
            && e.span == Some(key)
    });
    assert_eq!(in_task.len(), 1, "{in_task:?}");
}

async fn rt_spawn_timeout() -> Id {
    weft::spawn(async {
        let out =
            weft::time::timeout(Duration::from_millis(10), std::future::pending::<()>()).await;
        assert!(out.is_err());
        weft::task::id()
    })
    .await
    .unwrap()
}
