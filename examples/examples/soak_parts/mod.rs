//! The soak's newer parts, one module each: `weft::sync`, HTTP through
//! `weft-hyper`, and a `weft-resilience` policy pipeline.

pub(crate) mod heap;
pub(crate) mod http;
pub(crate) mod policy;
pub(crate) mod sync;
