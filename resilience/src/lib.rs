//! res
