//! (built separately)
