//! `#[weft::main]` and `#[weft::test]`: run an `async fn` on a weft runtime.
//!
//! Use them through the `weft` crate, which re-exports both (the examples are
//! compiled and run as doctests there; this crate cannot depend on `weft`):
//!
//! ```text
//! #[weft::main]
//! async fn main() {
//!     println!("hello from a weft worker");
//! }
//!
//! #[weft::main(worker_threads = 4)]
//! async fn main() -> std::io::Result<()> {
//!     serve().await?;
//!     Ok(())
//! }
//!
//! #[weft::test]
//! async fn answers() {
//!     assert_eq!(answer().await, 42);
//! }
//! ```
//!
//! Each attribute removes `async` from the function and wraps its body in a
//! runtime (multi-threaded unless `flavor` says otherwise) that is built,
//! used for one `block_on`, and dropped:
//!
//! ```text
//! fn main() -> R {
//!     ::weft::runtime::Builder::new_multi_thread()
//!         .worker_threads(4) // only when given
//!         .build()
//!         .expect("failed to build the weft runtime")
//!         .block_on(async move { /* the original body */ })
//! }
//! ```
//!
//! The function keeps its attributes, visibility, name and return type.
//! `#[weft::test]` also adds `#[test]` (do not write it yourself) and, unless
//! `worker_threads` is given, uses 2 workers so that tests exercise the
//! multi-threaded scheduler without each one starting a thread per core.
//!
//! The arguments are `worker_threads = N`, with `N` a non-zero integer
//! literal, and `flavor = "multi_thread"` (the default), `"current_thread"`
//! (`Builder::new_current_thread`: the function's thread runs everything;
//! `worker_threads` is then an error) or `"thread_per_core"`
//! (`Builder::new_thread_per_core`). Misuse is a compile error pointing at the offending token: a
//! function without `async`, parameters, generics on `main`, an unknown or
//! repeated argument, a value that is zero or not an integer literal, an
//! unknown flavor, or `worker_threads` with `"current_thread"`.

mod expand;

use proc_macro::TokenStream;

use crate::expand::{expand, Kind};

/// Runs `async fn main` on a weft runtime (multi-threaded by default).
///
/// Accepts `worker_threads = N` and `flavor = "..."`; without
/// `worker_threads` the runtime picks its default
/// (one worker per core). See the crate docs for the expansion.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    expand_or_error(Kind::Main, args, item)
}

/// Runs an `async fn` test on a weft runtime (by default multi-threaded,
/// with 2 workers).
///
/// Accepts `worker_threads = N` and `flavor = "..."`. Adds `#[test]`; see
/// the crate docs.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    expand_or_error(Kind::Test, args, item)
}

/// On error, emits the error next to a fallback so the error is the only one
/// the user sees: for a bad argument, the expansion with default arguments
/// (an `async fn main` left in place would add rustc's "`main` function is
/// not allowed to be `async`"); for a bad function, the function untouched.
fn expand_or_error(kind: Kind, args: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    match expand(kind, args.into(), item.clone()) {
        Ok(expanded) => expanded.into(),
        Err(error) => {
            let fallback = expand(kind, proc_macro2::TokenStream::new(), item.clone());
            let mut out = error.to_compile_error();
            out.extend(fallback.unwrap_or(item));
            out.into()
        }
    }
}
