//! Latency histograms in `RuntimeMetrics`: known workloads (tasks that spin
//! a known time, a task queued behind a busy one, a task woken from outside,
//! a socket read that waits for its data) show up in the poll duration,
//! schedule latency and io op latency histograms, on both io drivers; the
//! sampling interval and the off switch do what they say.

mod common;

use std::{
    sync::mpsc,
    time::{Duration, Instant},
};

use common::{
    block_on_bounded, eventually,
    net::{listener, on_each_driver, read_exact, NetRt},
    Gate,
};
use weft::{
    io::Driver,
    net::TcpStream,
    runtime::{BuildError, Builder, Runtime, RuntimeMetrics},
    task::yield_now,
};

/// Spins (holding the worker) for at least `d`.
fn spin(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// One worker, every schedule sampled.
fn timed_rt() -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(1)
        .histogram_sample_interval(1)
        .build()
        .unwrap()
}

/// With every schedule sampled, each poll is timed: once the worker has
/// recorded the last poll (it does so after the poll returns, which is
/// after the joiner was woken), the counts equal the polls.
fn counts_settle_at_polls(rt: &Runtime) -> RuntimeMetrics {
    let mut m = rt.metrics();
    assert!(
        eventually(|| {
            m = rt.metrics();
            let w = &m.worker[0];
            w.poll_duration.count() == w.polls && w.schedule_latency.count() == w.polls
        }),
        "counts {} and {} never reached the {} polls",
        m.worker[0].poll_duration.count(),
        m.worker[0].schedule_latency.count(),
        m.worker[0].polls
    );
    m
}

#[test]
fn poll_durations_see_a_known_spin() {
    const SPIN: Duration = Duration::from_millis(3);
    let rt = timed_rt();
    block_on_bounded(&rt, async {
        weft::spawn(async {
            for _ in 0..5 {
                spin(SPIN);
                yield_now().await;
            }
            spin(SPIN);
        })
        .await
        .unwrap();
    });
    let m = counts_settle_at_polls(&rt);
    let polls = m.poll_duration();
    assert_eq!(polls.count(), 6, "one task polled six times: {polls:?}");
    assert_eq!(m.worker[0].polls, 6);
    // Every poll spun at least SPIN (by `Instant`; the ticks' rate is
    // measured against it to well under 1%).
    let floor = SPIN.mul_f64(0.99);
    assert!(polls.min() >= floor, "{polls:?}");
    assert!(polls.percentile(50.0) >= floor, "{polls:?}");
    assert!(polls.percentile(99.0) >= polls.percentile(50.0));
    assert!(polls.max() < Duration::from_secs(5), "{polls:?}");
    assert!(polls.mean() >= floor && polls.mean() <= polls.max());
    let in_buckets: u64 = polls.buckets().map(|b| b.count).sum();
    assert_eq!(in_buckets, 6);
    for bucket in polls.buckets() {
        assert!(bucket.low <= bucket.high);
        assert!(
            bucket.high - bucket.low <= bucket.low.mul_f64(1.0 / 16.0) + Duration::from_nanos(1)
        );
    }
}

#[test]
fn schedule_latency_sees_a_task_queued_behind_a_busy_one() {
    const BUSY: Duration = Duration::from_millis(5);
    let rt = timed_rt();
    block_on_bounded(&rt, async {
        weft::spawn(async {
            // Queued on this (the only) worker, which stays busy for BUSY:
            // the child waits at least that long to be polled.
            let child = weft::spawn(async {});
            spin(BUSY);
            child.await.unwrap();
        })
        .await
        .unwrap();
    });
    let m = counts_settle_at_polls(&rt);
    let waits = m.schedule_latency();
    assert!(waits.count() >= 2, "{waits:?}");
    assert!(
        waits.max() >= BUSY.mul_f64(0.99),
        "the child waited behind a {BUSY:?} poll: {waits:?}"
    );
    // The parent was polled right after its spawn from `block_on`, on an
    // idle worker: far from the child's wait.
    assert!(waits.min() < BUSY, "{waits:?}");
}

#[test]
fn a_task_woken_from_another_thread_is_timed_from_its_wake() {
    let rt = timed_rt();
    let gate = Gate::new();
    let (started_tx, started_rx) = mpsc::channel();
    let waiter = {
        let gate = gate.clone();
        rt.spawn(async move {
            started_tx.send(()).unwrap();
            gate.wait().await;
        })
    };
    started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let before = counts_settle_at_polls(&rt);
    // The wake comes from this thread (a remote schedule into the
    // injector); the task's next poll is timed from it.
    gate.open();
    block_on_bounded(&rt, waiter).unwrap();
    let after = counts_settle_at_polls(&rt);
    assert!(after.worker[0].polls > before.worker[0].polls);
    assert_eq!(
        after.schedule_latency().count() - before.schedule_latency().count(),
        after.worker[0].polls - before.worker[0].polls,
        "every poll after the wake was timed"
    );
    // The waiter sat parked for a while before the wake; a latency counted
    // from its spawn instead of its wake would be that long.
    assert!(
        after.schedule_latency().max() < Duration::from_secs(5),
        "{:?}",
        after.schedule_latency()
    );
}

#[test]
fn one_schedule_in_the_interval_is_sampled() {
    const YIELDS: u64 = 64 * 100;
    let rt = Builder::new_multi_thread()
        .worker_threads(1)
        .histogram_sample_interval(64)
        .build()
        .unwrap();
    block_on_bounded(&rt, async {
        weft::spawn(async {
            for _ in 0..YIELDS {
                yield_now().await;
            }
        })
        .await
        .unwrap();
    });
    let m = rt.metrics();
    assert_eq!(m.histogram_sample_interval, 64);
    let polls = m.worker[0].polls;
    assert!(polls > YIELDS);
    let sampled = m.poll_duration().count();
    // The spawn (from this thread, whose first schedule is sampled) and one
    // in 64 of the worker's yields.
    let expected = polls / 64;
    assert!(
        sampled >= expected.saturating_sub(2) && sampled <= expected + 2,
        "{sampled} polls sampled of {polls}, expected about {expected}"
    );
}

#[test]
fn histograms_off_record_nothing() {
    let rt = Builder::new_multi_thread()
        .worker_threads(2)
        .histograms(false)
        .build()
        .unwrap();
    block_on_bounded(&rt, async {
        let tasks: Vec<_> = (0..100)
            .map(|_| weft::spawn(async { yield_now().await }))
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    let m = rt.metrics();
    assert_eq!(m.histogram_sample_interval, 0);
    assert!(m.total_polls() >= 200);
    assert!(m.poll_duration().is_empty(), "{:?}", m.poll_duration());
    assert!(m.schedule_latency().is_empty());
    assert_eq!(m.poll_duration().percentile(99.0), Duration::ZERO);
}

#[test]
fn a_zero_sample_interval_is_a_build_error() {
    let err = Builder::new_multi_thread()
        .worker_threads(1)
        .histogram_sample_interval(0)
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::ZeroHistogramSampleInterval));
    assert!(err.to_string().contains("histograms(false)"), "{err}");
}

/// A server read waits `DELAY` for the client's bytes: the ring's op (or
/// the epoll wait) took at least that long; counts match the operations
/// of a short exchange.
fn io_latency_sees_a_read_that_waits(driver: Driver) {
    const DELAY: Duration = Duration::from_millis(20);
    // Every op timed (the default interval would leave most unsampled).
    let t = NetRt::with(driver, |b| b.histogram_sample_interval(1));
    let before = t.rt.metrics().io_op_latency().count();
    t.in_task(async {
        let (listener, addr) = listener().await;
        let server = weft::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            read_exact(&stream, 4).await
        });
        let client = TcpStream::connect(addr).await.expect("connect");
        weft::time::sleep(DELAY).await.unwrap();
        let (res, _) = client.write_all(b"ping".to_vec()).await;
        res.expect("write");
        assert_eq!(server.await.unwrap(), b"ping");
    });
    let ops = t.rt.metrics().io_op_latency();
    assert!(
        ops.count() > before,
        "no io recorded on {driver:?}: {ops:?}"
    );
    assert!(
        ops.max() >= DELAY.mul_f64(0.9),
        "the server's read waited {DELAY:?} on {driver:?}: {ops:?}"
    );
    assert!(ops.max() < Duration::from_secs(10), "{ops:?}");
    t.finish();
}

on_each_driver!(io_latency_sees_a_read_that_waits);

/// `ROUNDS` 8-byte round trips on one loopback connection; returns the
/// io_uring submissions they made and the ops the histogram counted.
fn echo_rounds(t: &NetRt) -> (u64, u64) {
    const ROUNDS: usize = 100;
    let subs = |m: &RuntimeMetrics| m.worker.iter().map(|w| w.io_submissions).sum::<u64>();
    let before = t.rt.metrics();
    t.in_task(async {
        let (listener, addr) = listener().await;
        let server = weft::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            for _ in 0..ROUNDS {
                let got = read_exact(&stream, 8).await;
                let (res, _) = stream.write_all(got).await;
                res.expect("echo");
            }
        });
        let client = TcpStream::connect(addr).await.expect("connect");
        for i in 0..ROUNDS {
            let (res, _) = client.write_all(vec![i as u8; 8]).await;
            res.expect("write");
            assert_eq!(read_exact(&client, 8).await, vec![i as u8; 8]);
        }
        server.await.unwrap();
    });
    let after = t.rt.metrics();
    (
        subs(&after) - subs(&before),
        after.io_op_latency().count() - before.io_op_latency().count(),
    )
}

/// On io_uring one op in `histogram_sample_interval` is timed, per ring:
/// about submissions ÷ interval ops counted, never more.
#[test]
fn io_uring_times_one_op_in_the_sample_interval() {
    const INTERVAL: u32 = 8;
    let t = NetRt::with(Driver::Uring, |b| b.histogram_sample_interval(INTERVAL));
    let (subs, counted) = echo_rounds(&t);
    assert!(subs >= 400, "100 round trips are 400 ops or more: {subs}");
    let expected = subs / u64::from(INTERVAL);
    assert!(
        counted <= expected && counted >= expected / 2,
        "{counted} ops timed of {subs} submitted, one in {INTERVAL} expected"
    );
    t.finish();
}

/// With histograms off, io_uring times no op.
#[test]
fn io_uring_times_no_op_with_histograms_off() {
    let t = NetRt::with(Driver::Uring, |b| b.histograms(false));
    let (subs, counted) = echo_rounds(&t);
    assert!(subs >= 400, "{subs}");
    assert_eq!(counted, 0, "{counted} ops timed with histograms off");
    t.finish();
}
