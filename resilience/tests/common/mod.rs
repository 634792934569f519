//! Helpers shared by the pool tests: a value that counts its live instances
//! and its drops, so every test can check nothing leaked or dropped twice.

#![allow(dead_code, unreachable_pub)]

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

/// Live and dropped counts for one test.
#[derive(Debug, Default, Clone)]
pub struct Census(Arc<(AtomicUsize, AtomicUsize, AtomicUsize)>);

impl Census {
    pub fn new() -> Self {
        Self::default()
    }

    /// A new counted value with the next serial number.
    pub fn make(&self) -> Counted {
        self.0 .0.fetch_add(1, Ordering::SeqCst);
        let serial = self.0 .2.fetch_add(1, Ordering::SeqCst);
        Counted {
            census: self.clone(),
            serial,
            payload: Vec::new(),
        }
    }

    /// Values created and not yet dropped.
    pub fn live(&self) -> usize {
        self.0 .0.load(Ordering::SeqCst)
    }

    /// Values dropped.
    pub fn dropped(&self) -> usize {
        self.0 .1.load(Ordering::SeqCst)
    }

    /// Values created.
    pub fn created(&self) -> usize {
        self.0 .2.load(Ordering::SeqCst)
    }
}

/// A value that reports its drop to its [`Census`]; panics if dropped twice.
#[derive(Debug)]
pub struct Counted {
    census: Census,
    pub serial: usize,
    pub payload: Vec<u8>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let before = self.census.0 .0.fetch_sub(1, Ordering::SeqCst);
        assert!(before > 0, "more drops than values");
        self.census.0 .1.fetch_add(1, Ordering::SeqCst);
    }
}
