//! The soak's `weft::sync` part: producer/consumer rounds over a bounded
//! mpsc channel with deadlines and cancels on both sides, a shared counter
//! behind a `Mutex`, an `RwLock` and a `Semaphore` hammered by tasks some of
//! which are cut mid-wait, and Notify/oneshot/watch/broadcast round trips.
//!
//! Every message carries a ledger entry: it is either received (once, in
//! order per producer) or dropped (returned by a failed send, dropped with
//! a send future, or dropped with the channel), never both, never neither.
//! A consumer that ran until `Closed` received every accepted message.

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc, Mutex as StdMutex,
    },
    time::Duration,
};

use weft::{
    sync::{broadcast, mpsc, oneshot, watch, Mutex, Notify, RwLock, Semaphore},
    time::{sleep, timeout},
};

use crate::{Rng, Stats};

const PRODUCERS: u64 = 3;
const MESSAGES_PER_PRODUCER: u64 = 100;
const CHANNEL_CAPACITY: usize = 8;
const LOCK_TASKS: u64 = 8;
const INCREMENTS_PER_TASK: u64 = 20;
/// The semaphore whose permits must all come back.
pub(crate) const POOL_PERMITS: usize = 4;

/// The shared state of the lock part, kept for the checks at shutdown.
pub(crate) struct Locks {
    mutex: Mutex<u64>,
    rwlock: RwLock<u64>,
    /// One permit: mutual exclusion for `sem_value`.
    gate: Semaphore,
    sem_value: AtomicU64,
    /// Permits taken 1–3 at a time; all back when no task holds one.
    pub(crate) pool: Semaphore,
    /// Increments that completed, per primitive.
    mutex_done: AtomicU64,
    rwlock_done: AtomicU64,
    gate_done: AtomicU64,
}

impl Locks {
    pub(crate) fn new() -> Locks {
        Locks {
            mutex: Mutex::new(0),
            rwlock: RwLock::new(0),
            gate: Semaphore::new(1),
            sem_value: AtomicU64::new(0),
            pool: Semaphore::new(POOL_PERMITS),
            mutex_done: AtomicU64::new(0),
            rwlock_done: AtomicU64::new(0),
            gate_done: AtomicU64::new(0),
        }
    }

    /// `Err` if a counter differs from its completed increments or a
    /// permit is missing. Only meaningful while no lock task runs.
    pub(crate) fn check_settled(&self) -> Result<(), String> {
        let mutex = *self
            .mutex
            .try_lock()
            .map_err(|_| "the soak's Mutex is still locked with no task left")?;
        let rwlock = *self
            .rwlock
            .try_read()
            .map_err(|_| "the soak's RwLock is still write-locked with no task left")?;
        let pairs = [
            ("Mutex", mutex, self.mutex_done.load(Relaxed)),
            ("RwLock", rwlock, self.rwlock_done.load(Relaxed)),
            (
                "Semaphore(1)",
                self.sem_value.load(Relaxed),
                self.gate_done.load(Relaxed),
            ),
        ];
        for (name, value, done) in pairs {
            if value != done {
                return Err(format!(
                    "the {name}-protected counter is {value}, {done} increments completed"
                ));
            }
        }
        if self.gate.available_permits() != 1 {
            return Err(format!(
                "the Semaphore(1) has {} permits with no task left",
                self.gate.available_permits()
            ));
        }
        if self.pool.available_permits() != POOL_PERMITS {
            return Err(format!(
                "the Semaphore({POOL_PERMITS}) has {} permits with no task left",
                self.pool.available_permits()
            ));
        }
        Ok(())
    }
}

// ------------------------------------------------------------------- mpsc

#[derive(Default)]
struct LedgerInner {
    created: u64,
    accepted: HashSet<u64>,
    received: HashSet<u64>,
    dropped: HashSet<u64>,
    /// The first broken rule, if any.
    broken: Option<String>,
}

#[derive(Default)]
struct Ledger(StdMutex<LedgerInner>);

impl Ledger {
    fn lock(&self) -> std::sync::MutexGuard<'_, LedgerInner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A message that records how it ends.
struct Msg {
    id: u64,
    consumed: bool,
    ledger: Arc<Ledger>,
}

impl Msg {
    fn new(id: u64, ledger: &Arc<Ledger>) -> Msg {
        ledger.lock().created += 1;
        Msg {
            id,
            consumed: false,
            ledger: ledger.clone(),
        }
    }
}

impl Drop for Msg {
    fn drop(&mut self) {
        if self.consumed {
            return;
        }
        let mut l = self.ledger.lock();
        if l.received.contains(&self.id) || !l.dropped.insert(self.id) {
            l.broken.get_or_insert(format!(
                "message {} dropped twice or after delivery",
                self.id
            ));
        }
    }
}

async fn producer(
    p: u64,
    tx: mpsc::Sender<Msg>,
    ledger: Arc<Ledger>,
    stats: Arc<Stats>,
    seed: u64,
) {
    let mut rng = Rng::new(seed);
    for i in 0..MESSAGES_PER_PRODUCER {
        let id = p * 1_000_000 + i;
        let msg = Msg::new(id, &ledger);
        let outcome = match rng.below(4) {
            // Under a short deadline: the send may be cut while it waits
            // for capacity (`Err(Cancelled)`), or dropped with the timeout.
            0 => timeout(Duration::from_micros(rng.below(1_500)), tx.send(msg))
                .await
                .ok(),
            // Through a reserved permit, under a deadline too.
            1 => match timeout(Duration::from_micros(rng.below(1_500)), tx.reserve()).await {
                Ok(Ok(permit)) => {
                    permit.send(msg);
                    Some(Ok(()))
                }
                Ok(Err(mpsc::error::SendError::Closed(()))) => {
                    drop(msg);
                    return;
                }
                Ok(Err(_)) | Err(_) => {
                    // Cut (the only other way a reserve ends).
                    drop(msg);
                    None
                }
            },
            _ => Some(tx.send(msg).await),
        };
        match outcome {
            Some(Ok(())) => {
                ledger.lock().accepted.insert(id);
                stats.count(crate::SYNC_SENT);
            }
            Some(Err(mpsc::error::SendError::Closed(m))) => {
                drop(m);
                return;
            }
            Some(Err(e)) => {
                // Cancelled: the value comes back.
                drop(e.into_inner());
                stats.count(crate::SYNC_CUT);
                if weft::cancel::is_cancelled() {
                    // The producer task itself was cancelled.
                    return;
                }
            }
            None => stats.count(crate::SYNC_CUT),
        }
    }
}

/// Receives until `Closed` (returns true) or its task is cancelled.
async fn consumer(
    mut rx: mpsc::Receiver<Msg>,
    ledger: Arc<Ledger>,
    stats: Arc<Stats>,
    seed: u64,
) -> bool {
    let mut rng = Rng::new(seed);
    let mut last = [None::<u64>; PRODUCERS as usize];
    loop {
        let got = if rng.below(3) == 0 {
            match timeout(Duration::from_micros(rng.below(800)), rx.recv()).await {
                Ok(r) => r,
                Err(_elapsed) => {
                    stats.count(crate::SYNC_CUT);
                    continue;
                }
            }
        } else {
            rx.recv().await
        };
        match got {
            Ok(mut msg) => {
                msg.consumed = true;
                let (p, seq) = (msg.id / 1_000_000, msg.id % 1_000_000);
                let mut l = ledger.lock();
                if !l.received.insert(msg.id) || l.dropped.contains(&msg.id) {
                    l.broken
                        .get_or_insert(format!("message {} delivered twice", msg.id));
                }
                let slot = &mut last[p as usize];
                if slot.is_some_and(|s| s >= seq) {
                    l.broken.get_or_insert(format!(
                        "producer {p}'s message {seq} came after its message {}",
                        slot.unwrap_or(0)
                    ));
                }
                *slot = Some(seq);
                drop(l);
                stats.count(crate::SYNC_RECEIVED);
            }
            Err(mpsc::error::RecvError::Closed) => return true,
            Err(_cancelled) => {
                if weft::cancel::is_cancelled() {
                    return false;
                }
                stats.count(crate::SYNC_CUT);
            }
        }
    }
}

/// One channel's life: three producers, one consumer, either side maybe
/// cancelled; then the ledger must balance.
async fn channel_round(stats: &Arc<Stats>, rng: &mut Rng) -> Result<(), String> {
    let ledger = Arc::new(Ledger::default());
    let (tx, rx) = mpsc::channel::<Msg>(CHANNEL_CAPACITY);
    let cancel_consumer = rng.below(4) == 0;
    let consumer = weft::spawn(consumer(rx, ledger.clone(), stats.clone(), rng.next()));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            weft::spawn(producer(
                p,
                tx.clone(),
                ledger.clone(),
                stats.clone(),
                rng.next(),
            ))
        })
        .collect();
    // Cancel one producer (and maybe the consumer) mid-way.
    let victim = (rng.below(2) == 0).then(|| rng.below(PRODUCERS) as usize);
    let _ = sleep(Duration::from_micros(rng.below(3_000))).await;
    if let Some(v) = victim {
        producers[v].cancel();
    }
    if cancel_consumer {
        consumer.cancel();
    }
    for p in producers {
        match p.await {
            Ok(()) => {}
            Err(e) if e.is_cancelled() => stats.count(crate::SYNC_CUT),
            Err(e) => return Err(format!("an mpsc producer: {e}")),
        }
    }
    // Every producer is done: a draining consumer gives every permit back.
    if !cancel_consumer {
        let mut waited = 0;
        while tx.capacity() != tx.max_capacity() && waited < 2_000 {
            let _ = sleep(Duration::from_millis(1)).await;
            waited += 1;
        }
        if tx.capacity() != tx.max_capacity() {
            return Err(format!(
                "the mpsc channel has {} of {} permits after the consumer drained it",
                tx.capacity(),
                tx.max_capacity()
            ));
        }
    }
    drop(tx);
    let drained = match consumer.await {
        Ok(drained) => drained,
        Err(e) if e.is_cancelled() => false,
        Err(e) => return Err(format!("the mpsc consumer: {e}")),
    };
    let l = ledger.lock();
    if let Some(b) = &l.broken {
        return Err(b.clone());
    }
    let ended = l.received.len() as u64 + l.dropped.len() as u64;
    if l.created != ended {
        return Err(format!(
            "{} messages created, {} received + {} dropped: {} lost",
            l.created,
            l.received.len(),
            l.dropped.len(),
            l.created as i64 - ended as i64
        ));
    }
    if let Some(id) = l.received.iter().find(|id| !l.accepted.contains(id)) {
        return Err(format!("message {id} was received but its send failed"));
    }
    let in_channel = l
        .accepted
        .iter()
        .filter(|id| !l.received.contains(id))
        .count();
    if drained && in_channel != 0 {
        return Err(format!(
            "the consumer drained the channel, yet {in_channel} accepted messages never came"
        ));
    }
    stats.add(crate::SYNC_DROPPED, in_channel as u64);
    Ok(())
}

pub(crate) async fn channels(stats: Arc<Stats>, stop: Arc<AtomicBool>, seed: u64) {
    let mut rng = Rng::new(seed);
    while !stop.load(Relaxed) {
        if let Err(e) = channel_round(&stats, &mut rng).await {
            stats.fail(e);
            return;
        }
        // A pause between rounds keeps the part's share of the load near
        // the others' (a round is 300 messages).
        let _ = sleep(Duration::from_millis(5)).await;
    }
}

// ------------------------------------------------------------------ locks

/// One increment through a randomly picked primitive; `false` if it was
/// cut (nothing incremented then).
async fn increment(locks: &Locks, rng: &mut Rng) -> Result<bool, String> {
    let hold = Duration::from_micros(rng.below(200));
    let wait = Duration::from_micros(rng.below(1_000));
    match rng.below(5) {
        0 => {
            let Ok(Ok(mut g)) = timeout(wait, locks.mutex.lock()).await else {
                return Ok(false);
            };
            let v = *g;
            // Held across an await point that may be cut: then no write.
            if sleep(hold).await.is_err() {
                return Ok(false);
            }
            *g = v + 1;
            locks.mutex_done.fetch_add(1, Relaxed);
        }
        1 => {
            let Ok(Ok(mut g)) = timeout(wait, locks.rwlock.write()).await else {
                return Ok(false);
            };
            let v = *g;
            if sleep(hold).await.is_err() {
                return Ok(false);
            }
            *g = v + 1;
            locks.rwlock_done.fetch_add(1, Relaxed);
        }
        2 => {
            let Ok(Ok(g)) = timeout(wait, locks.rwlock.read()).await else {
                return Ok(false);
            };
            let v = *g;
            let _ = sleep(hold).await;
            if *g != v {
                return Err(format!(
                    "the RwLock changed from {v} to {} under a read guard",
                    *g
                ));
            }
            return Ok(false);
        }
        3 => {
            let Ok(Ok(permit)) = timeout(wait, locks.gate.acquire()).await else {
                return Ok(false);
            };
            let v = locks.sem_value.load(Relaxed);
            if sleep(hold).await.is_err() {
                return Ok(false);
            }
            locks.sem_value.store(v + 1, Relaxed);
            locks.gate_done.fetch_add(1, Relaxed);
            drop(permit);
        }
        _ => {
            let n = 1 + rng.below(3) as u32;
            let Ok(Ok(permit)) = timeout(wait, locks.pool.acquire_many(n)).await else {
                return Ok(false);
            };
            if permit.num_permits() != n as usize {
                return Err(format!(
                    "acquire_many({n}) gave {} permits",
                    permit.num_permits()
                ));
            }
            let _ = sleep(hold).await;
            return Ok(false);
        }
    }
    Ok(true)
}

pub(crate) async fn lock_loop(
    locks: Arc<Locks>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    seed: u64,
) {
    let mut rng = Rng::new(seed);
    while !stop.load(Relaxed) {
        let tasks: Vec<_> = (0..LOCK_TASKS)
            .map(|_| {
                let locks = locks.clone();
                let stats = stats.clone();
                let mut rng = Rng::new(rng.next());
                weft::spawn(async move {
                    for _ in 0..INCREMENTS_PER_TASK {
                        match increment(&locks, &mut rng).await {
                            Ok(true) => stats.count(crate::SYNC_INCREMENTS),
                            Ok(false) => stats.count(crate::SYNC_LOCK_CUT),
                            Err(e) => {
                                stats.fail(e);
                                return;
                            }
                        }
                    }
                })
            })
            .collect();
        // Cut two of them mid-way: one cancelled, one aborted.
        let _ = sleep(Duration::from_micros(rng.below(4_000))).await;
        let (c, a) = (
            rng.below(LOCK_TASKS) as usize,
            rng.below(LOCK_TASKS) as usize,
        );
        tasks[c].cancel();
        tasks[a].abort();
        for t in tasks {
            if let Err(e) = t.await {
                if !e.is_cancelled() {
                    stats.fail(format!("a lock task: {e}"));
                    return;
                }
            }
        }
        if let Err(e) = locks.check_settled() {
            stats.fail(e);
            return;
        }
    }
}

// ------------------------------------------------------------ round trips

/// Notify, oneshot, watch and broadcast, each one round trip per turn; a
/// wait cut by a deadline is retried, so every turn completes.
async fn round_trip(turn: u64, rng: &mut Rng) -> Result<(), String> {
    // Notify: a stored permit or a woken waiter, either way one wake-up.
    let notify = Arc::new(Notify::new());
    let n = notify.clone();
    let delay = Duration::from_micros(rng.below(500));
    let notifier = weft::spawn(async move {
        let _ = sleep(delay).await;
        n.notify_one();
    });
    loop {
        match timeout(Duration::from_micros(rng.below(600)), notify.notified()).await {
            Ok(Ok(())) => break,
            Ok(Err(c)) => return Err(format!("Notify: {c}")),
            Err(_elapsed) => continue,
        }
    }
    notifier.await.map_err(|e| format!("the notifier: {e}"))?;

    // oneshot: a value across tasks.
    let (tx, rx) = oneshot::channel();
    let sender = weft::spawn(async move {
        weft::task::yield_now().await;
        tx.send(turn).map_err(|_| "the oneshot receiver is gone")
    });
    match rx.await {
        Ok(v) if v == turn => {}
        other => return Err(format!("oneshot gave {other:?}, {turn} was sent")),
    }
    sender
        .await
        .map_err(|e| format!("the oneshot sender: {e}"))??;

    // watch: ping on one channel, pong on another.
    let (ping_tx, mut ping_rx) = watch::channel(0u64);
    let (pong_tx, mut pong_rx) = watch::channel(0u64);
    let echo = weft::spawn(async move {
        while ping_rx.changed().await.is_ok() {
            let v = *ping_rx.borrow_and_update();
            if pong_tx.send(v).is_err() {
                return;
            }
        }
    });
    for v in 1..=4u64 {
        ping_tx.send(v).map_err(|_| "the watch echo is gone")?;
        pong_rx
            .wait_for(|&got| got == v)
            .await
            .map_err(|e| format!("watch: {e:?}"))?;
    }
    drop(ping_tx);
    echo.await.map_err(|e| format!("the watch echo: {e}"))?;

    // broadcast: every subscriber sees every value, in order.
    let (btx, _) = broadcast::channel::<u64>(16);
    let subscribers: Vec<_> = (0..3)
        .map(|_| {
            let mut rx = btx.subscribe();
            weft::spawn(async move {
                let mut got = Vec::new();
                loop {
                    match rx.recv().await {
                        Ok(v) => got.push(v),
                        Err(broadcast::RecvError::Closed) => return Ok(got),
                        Err(e) => return Err(format!("broadcast: {e:?}")),
                    }
                }
            })
        })
        .collect();
    for v in 0..8 {
        btx.send(turn * 8 + v)
            .map_err(|_| "every broadcast subscriber is gone")?;
    }
    drop(btx);
    let want: Vec<u64> = (0..8).map(|v| turn * 8 + v).collect();
    for s in subscribers {
        let got = s
            .await
            .map_err(|e| format!("a broadcast subscriber: {e}"))??;
        if got != want {
            return Err(format!(
                "a broadcast subscriber got {got:?}, {want:?} was sent"
            ));
        }
    }
    Ok(())
}

pub(crate) async fn round_trips(stats: Arc<Stats>, stop: Arc<AtomicBool>, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut turn = 0;
    while !stop.load(Relaxed) {
        if let Err(e) = round_trip(turn, &mut rng).await {
            stats.fail(e);
            return;
        }
        stats.count(crate::SYNC_ROUND_TRIPS);
        turn += 1;
        let _ = sleep(Duration::from_millis(1)).await;
    }
}
