//! The io_uring driver's op table and op cells (`runtime/src/io/uring/`:
//! `OpTable` in `table.rs`, `OpCell` in `op.rs`) under any sequence of submits, completions,
//! stale and duplicate completions, polls and future drops, with the kernel
//! replaced by a model that completes operations when the input says.
//! Checked after every step and at the end:
//! - a completion is delivered only to an operation in flight, and at most
//!   once: a duplicate, or one naming a freed (maybe reused) slot, is
//!   dropped as stale and changes nothing;
//! - a buffer is never freed while the kernel may still write it: a
//!   cancelled operation's buffer lives until its completion arrives;
//! - a future sees exactly the result delivered, with its own buffer;
//! - an operation whose future was dropped before it completed has its
//!   data orphaned (`OpData::orphaned`) once, with the delivered result;
//! - `user_data` never has the top bit (the driver's tokens have it) and is
//!   unique among operations in flight, across the generation's wrap;
//! - at the end, with every operation completed, the table is empty and
//!   every buffer was freed exactly once (no slot or buffer leaked).

#![no_main]

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use libfuzzer_sys::fuzz_target;
use weft::__fuzz::{Buf, BufEvents, Op, OpTable};

const ECANCELED: i32 = 125;
const MAX_LIVE: usize = 64;

#[derive(Default)]
struct Kernel {
    /// The kernel may write buffer `id` (submitted, not completed).
    writing: Vec<bool>,
    dropped: Vec<u32>,
    orphaned: Vec<Option<i32>>,
}

struct Events(Mutex<Kernel>);

impl BufEvents for Events {
    fn dropped(&self, id: usize) {
        let mut k = self.0.lock().unwrap();
        assert!(!k.writing[id], "buffer {id} freed while the kernel may write it");
        k.dropped[id] += 1;
        assert_eq!(k.dropped[id], 1, "buffer {id} freed twice");
    }

    fn orphaned(&self, id: usize, res: i32) {
        let mut k = self.0.lock().unwrap();
        assert!(!k.writing[id], "buffer {id} orphaned before its completion");
        assert!(k.orphaned[id].is_none(), "buffer {id} orphaned twice");
        k.orphaned[id] = Some(res);
    }
}

/// One operation as the test follows it.
struct Tracked {
    id: usize,
    user_data: u64,
    /// The future, while it lives.
    future: Option<Op>,
    /// The result delivered, once.
    result: Option<i32>,
    /// Its future was dropped before it took the result.
    abandoned: bool,
    /// The result was taken by the future.
    taken: bool,
}

/// Bytes of the input, then zeros.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        *b
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }
    fn done(&self) -> bool {
        self.0.is_empty()
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    // The first completion after a wrap reuses generation 0: start near it.
    let generation = match input.byte() % 3 {
        0 => 0,
        1 => 0x7fff_ffff - u32::from(input.byte() % 8),
        _ => input.u32(),
    };
    let events = Arc::new(Events(Mutex::new(Kernel::default())));
    let mut table = OpTable::new(generation);
    let mut ops: Vec<Tracked> = Vec::new();
    // In flight: index into `ops`, by user_data.
    let mut in_flight: HashMap<u64, usize> = HashMap::new();
    // Every user_data ever completed (for stale and duplicate deliveries).
    let mut retired: Vec<u64> = Vec::new();

    let deliver = |table: &mut OpTable,
                       ops: &mut Vec<Tracked>,
                       in_flight: &mut HashMap<u64, usize>,
                       retired: &mut Vec<u64>,
                       user_data: u64,
                       res: i32| {
        let i = in_flight.remove(&user_data).expect("delivering an op in flight");
        let id = ops[i].id;
        // The kernel is done with the buffer once it posts the completion.
        events.0.lock().unwrap().writing[id] = false;
        let len = table.len();
        assert!(table.deliver(user_data, res), "a live completion was refused");
        assert_eq!(table.len(), len - 1, "the entry leaves at its completion");
        ops[i].result = Some(res);
        retired.push(user_data);
        if ops[i].abandoned {
            let k = events.0.lock().unwrap();
            assert_eq!(k.orphaned[id], Some(res), "the orphaned data saw the result");
            assert_eq!(k.dropped[id], 1, "the table let go of the abandoned buffer");
        } else {
            assert_eq!(events.0.lock().unwrap().dropped[id], 0, "the future still owns it");
        }
    };

    while !input.done() {
        match input.byte() % 7 {
            // Submit.
            0 | 1 if in_flight.len() < MAX_LIVE => {
                let id = ops.len();
                {
                    let mut k = events.0.lock().unwrap();
                    k.writing.push(true);
                    k.dropped.push(0);
                    k.orphaned.push(None);
                }
                let (op, user_data) = table
                    .submit(Buf::new(id, events.clone()))
                    .expect("a fresh op registers");
                assert_eq!(op.user_data(), user_data);
                assert_eq!(user_data >> 63, 0, "user_data never has the token bit");
                assert!(!in_flight.contains_key(&user_data), "user_data {user_data:#x} in use");
                in_flight.insert(user_data, id);
                ops.push(Tracked {
                    id,
                    user_data,
                    future: Some(op),
                    result: None,
                    abandoned: false,
                    taken: false,
                });
                assert_eq!(table.len(), in_flight.len());
            }
            // The kernel completes one in flight (a cancelled one may still
            // complete with its real result: the cancel raced it).
            2 if !in_flight.is_empty() => {
                let mut keys: Vec<u64> = in_flight.keys().copied().collect();
                keys.sort_unstable();
                let user_data = keys[usize::from(input.byte()) % keys.len()];
                let res = i32::from(input.byte() as i8);
                deliver(&mut table, &mut ops, &mut in_flight, &mut retired, user_data, res);
            }
            // A stale or duplicate completion: a retired user_data, or any
            // value; only one in flight may be delivered.
            3 => {
                let user_data = if !retired.is_empty() && input.byte() % 2 == 0 {
                    retired[usize::from(input.byte()) % retired.len()]
                } else {
                    u64::from(input.u32()) | (u64::from(input.byte() % 4) << 32)
                };
                if !in_flight.contains_key(&user_data) {
                    let len = table.len();
                    assert!(!table.deliver(user_data, -ECANCELED), "stale {user_data:#x} delivered");
                    assert_eq!(table.len(), len);
                }
            }
            // The future polls.
            4 if !ops.is_empty() => {
                let i = usize::from(input.byte()) % ops.len();
                let t = &mut ops[i];
                if let Some(op) = t.future.as_mut() {
                    match (op.poll(), t.result) {
                        (None, None) => {}
                        (Some((res, buf)), Some(delivered)) => {
                            assert_eq!(res, delivered);
                            assert_eq!(buf.id(), t.id, "its own buffer back");
                            t.taken = true;
                            t.future = None;
                            drop(buf);
                            assert_eq!(events.0.lock().unwrap().dropped[t.id], 1);
                        }
                        (got, delivered) => panic!(
                            "op {}: poll saw {:?}, delivered {delivered:?}",
                            t.id,
                            got.map(|(r, _)| r)
                        ),
                    }
                }
            }
            // The future is dropped.
            5 if !ops.is_empty() => {
                let i = usize::from(input.byte()) % ops.len();
                let t = &mut ops[i];
                if let Some(op) = t.future.take() {
                    let cancel = op.drop_future(&table);
                    match t.result {
                        None => {
                            assert_eq!(cancel, Some(t.user_data), "a pending op is cancelled");
                            t.abandoned = true;
                            let k = events.0.lock().unwrap();
                            assert_eq!(k.dropped[t.id], 0, "kept until its completion");
                        }
                        Some(res) => {
                            assert_eq!(cancel, None, "nothing to cancel once complete");
                            let k = events.0.lock().unwrap();
                            assert_eq!(k.orphaned[t.id], Some(res), "an untaken result is orphaned");
                            assert_eq!(k.dropped[t.id], 1);
                        }
                    }
                }
            }
            // The kernel answers a cancel: the cancelled op completes with
            // -ECANCELED.
            6 => {
                let cancelled: Option<u64> = {
                    let mut keys: Vec<u64> = in_flight
                        .iter()
                        .filter(|(_, i)| ops[**i].abandoned)
                        .map(|(ud, _)| *ud)
                        .collect();
                    keys.sort_unstable();
                    keys.first().copied()
                };
                if let Some(user_data) = cancelled {
                    deliver(&mut table, &mut ops, &mut in_flight, &mut retired, user_data, -ECANCELED);
                }
            }
            _ => {}
        }
    }

    // The end: everything in flight completes, every future is dropped.
    let mut rest: Vec<u64> = in_flight.keys().copied().collect();
    rest.sort_unstable();
    for user_data in rest {
        deliver(&mut table, &mut ops, &mut in_flight, &mut retired, user_data, 0);
    }
    for t in &mut ops {
        if let Some(op) = t.future.take() {
            assert_eq!(op.drop_future(&table), None, "everything completed");
        }
    }
    assert!(table.is_empty(), "{} entries left in the table", table.len());
    let k = events.0.lock().unwrap();
    for t in &ops {
        assert_eq!(k.dropped[t.id], 1, "buffer {} leaked", t.id);
        assert_eq!(
            k.orphaned[t.id].is_some(),
            !t.taken,
            "op {}: orphaned exactly when its result was not taken",
            t.id
        );
    }
});
