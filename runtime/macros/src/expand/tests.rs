//! The expansion's shape for good input and the error (message and the token
//! it points at) for each misuse.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::ItemFn;

use super::{expand, Kind};

fn tokens(source: &str) -> TokenStream {
    source.parse().expect("test input must tokenize")
}

/// Expands and parses the result back as a function.
fn expand_ok(kind: Kind, args: &str, item: &str) -> ItemFn {
    let out = expand(kind, tokens(args), tokens(item))
        .unwrap_or_else(|e| panic!("expansion failed: {e}"));
    syn::parse2(out).expect("expansion must be a function")
}

/// Expands expecting an error; returns its message and the source text of
/// the span it points at.
fn expand_err(kind: Kind, args: &str, item: &str) -> (String, String) {
    let err = expand(kind, tokens(args), tokens(item)).expect_err("expansion must fail");
    let spanned = err.span().source_text().unwrap_or_default();
    (err.to_string(), spanned)
}

/// Token text with whitespace removed, for substring checks.
fn compact(tokens: impl ToTokens) -> String {
    tokens.to_token_stream().to_string().replace(' ', "")
}

fn is_test_attr(attr: &syn::Attribute) -> bool {
    compact(attr) == "#[::core::prelude::v1::test]"
}

#[test]
fn main_becomes_a_sync_fn_that_blocks_on_its_body() {
    let f = expand_ok(
        Kind::Main,
        "",
        "#[allow(unused)] pub async fn main() { let x = 1; work(x).await; }",
    );
    assert!(f.sig.asyncness.is_none());
    assert_eq!(f.sig.ident, "main");
    assert!(matches!(f.vis, syn::Visibility::Public(_)));
    assert_eq!(f.attrs.len(), 1);
    assert_eq!(compact(&f.attrs[0]), "#[allow(unused)]");

    let body = compact(&f.block);
    assert!(
        body.starts_with("{::weft::runtime::Builder::new_multi_thread().build()"),
        "{body}"
    );
    assert!(
        f.block
            .to_token_stream()
            .to_string()
            .contains(". expect (\"failed to build the weft runtime\")"),
        "{body}"
    );
    assert!(
        body.contains(".block_on(asyncmove{letx=1;work(x).await;})"),
        "{body}"
    );
    assert!(
        !body.contains("worker_threads"),
        "main defaults to the runtime's choice: {body}"
    );
}

#[test]
fn main_passes_worker_threads_and_keeps_the_return_type() {
    let f = expand_ok(
        Kind::Main,
        "worker_threads = 4",
        "async fn main() -> Result<(), Box<dyn std::error::Error>> { run().await?; Ok(()) }",
    );
    assert_eq!(
        compact(&f.sig.output),
        "->Result<(),Box<dynstd::error::Error>>"
    );
    let body = compact(&f.block);
    assert!(
        body.contains("new_multi_thread().worker_threads(4).build()"),
        "{body}"
    );
    assert!(f.attrs.is_empty());
}

#[test]
fn trailing_comma_and_suffixed_literal_are_accepted() {
    let f = expand_ok(Kind::Main, "worker_threads = 3usize,", "async fn main() {}");
    assert!(compact(&f.block).contains(".worker_threads(3)"));
}

#[test]
fn test_adds_the_test_attribute_and_two_workers() {
    let f = expand_ok(
        Kind::Test,
        "",
        "#[should_panic] async fn it_works() { assert!(false); }",
    );
    assert!(f.sig.asyncness.is_none());
    assert_eq!(f.sig.ident, "it_works");
    assert_eq!(f.attrs.len(), 2);
    assert!(is_test_attr(&f.attrs[0]), "{}", compact(&f.attrs[0]));
    assert_eq!(compact(&f.attrs[1]), "#[should_panic]");
    let body = compact(&f.block);
    assert!(body.contains(".worker_threads(2).build()"), "{body}");
    assert!(body.contains(".block_on(asyncmove{"), "{body}");
}

#[test]
fn test_worker_threads_overrides_the_default() {
    let f = expand_ok(
        Kind::Test,
        "worker_threads = 8",
        "async fn t() -> std::io::Result<()> { Ok(()) }",
    );
    let body = compact(&f.block);
    assert!(body.contains(".worker_threads(8).build()"), "{body}");
    assert!(!body.contains("worker_threads(2)"), "{body}");
    assert_eq!(compact(&f.sig.output), "->std::io::Result<()>");
}

#[test]
fn main_may_not_be_generic() {
    let (msg, at) = expand_err(Kind::Main, "", "async fn main<T>() {}");
    assert_eq!(msg, "the main function cannot be generic");
    assert_eq!(at, "<T>");
}

#[test]
fn missing_async_is_an_error_on_fn() {
    for kind in [Kind::Main, Kind::Test] {
        let (msg, at) = expand_err(kind, "", "pub fn main() {}");
        assert_eq!(
            msg,
            "the `async` keyword is missing from the function declaration"
        );
        assert_eq!(at, "fn");
    }
}

#[test]
fn zero_workers_is_an_error_on_the_literal() {
    let (msg, at) = expand_err(Kind::Main, "worker_threads = 0", "async fn main() {}");
    assert_eq!(msg, "`worker_threads` must be at least 1");
    assert_eq!(at, "0");
}

#[test]
fn non_integer_workers_is_an_error_on_the_value() {
    for value in ["\"4\"", "4.0", "n", "2 + 2", "-1"] {
        let (msg, at) = expand_err(
            Kind::Test,
            &format!("worker_threads = {value}"),
            "async fn t() {}",
        );
        assert_eq!(
            msg, "`worker_threads` must be an integer literal, e.g. `worker_threads = 4`",
            "for {value}"
        );
        assert_eq!(at, value);
    }
}

#[test]
fn out_of_range_workers_is_an_error() {
    let (msg, at) = expand_err(
        Kind::Main,
        "worker_threads = 99999999999999999999999",
        "async fn main() {}",
    );
    assert!(msg.contains("number too large"), "{msg}");
    assert_eq!(at, "99999999999999999999999");
}

#[test]
fn missing_value_is_an_error() {
    let (msg, _) = expand_err(Kind::Main, "worker_threads", "async fn main() {}");
    assert!(msg.contains("expected `=`"), "{msg}");
}

#[test]
fn unknown_argument_is_an_error_on_its_name() {
    let (msg, at) = expand_err(Kind::Main, "workers = 2", "async fn main() {}");
    assert_eq!(
        msg,
        "unknown argument `workers`; the arguments are `worker_threads = N` and \
         `flavor = \"multi_thread\" | \"current_thread\" | \"thread_per_core\"`"
    );
    assert_eq!(at, "workers");
}

#[test]
fn flavors_pick_the_builder() {
    for (flavor, builder, workers) in [
        (
            "multi_thread",
            "new_multi_thread()",
            Some(".worker_threads(2)"),
        ),
        ("current_thread", "new_current_thread()", None),
        (
            "thread_per_core",
            "new_thread_per_core()",
            Some(".worker_threads(2)"),
        ),
    ] {
        let f = expand_ok(
            Kind::Test,
            &format!("flavor = \"{flavor}\""),
            "async fn t() {}",
        );
        let body = compact(&f.block);
        assert!(
            body.starts_with(&format!("{{::weft::runtime::Builder::{builder}")),
            "{body}"
        );
        match workers {
            Some(w) => assert!(body.contains(w), "{body}"),
            None => assert!(!body.contains("worker_threads"), "{body}"),
        }
    }
    let f = expand_ok(
        Kind::Main,
        "flavor = \"thread_per_core\", worker_threads = 3",
        "async fn main() {}",
    );
    assert!(compact(&f.block).contains(".worker_threads(3)"));
}

#[test]
fn bad_flavors_are_errors_on_their_value() {
    let (msg, at) = expand_err(Kind::Main, "flavor = \"local\"", "async fn main() {}");
    assert_eq!(
        msg,
        "unknown flavor `local`; expected `multi_thread`, `current_thread` or `thread_per_core`"
    );
    assert_eq!(at, "\"local\"");
    let (msg, at) = expand_err(
        Kind::Test,
        "flavor = \"current_thread\", worker_threads = 2",
        "async fn t() {}",
    );
    assert!(msg.starts_with("`worker_threads` is not allowed"), "{msg}");
    assert_eq!(at, "2");
    let (msg, _) = expand_err(
        Kind::Test,
        "flavor = \"current_thread\", flavor = \"multi_thread\"",
        "async fn t() {}",
    );
    assert_eq!(msg, "`flavor` is given more than once");
    let (msg, _) = expand_err(Kind::Test, "flavor = current_thread", "async fn t() {}");
    assert!(msg.contains("expected string literal"), "{msg}");
}

#[test]
fn duplicate_argument_is_an_error_on_the_second() {
    let (msg, at) = expand_err(
        Kind::Test,
        "worker_threads = 2, worker_threads = 3",
        "async fn t() {}",
    );
    assert_eq!(msg, "`worker_threads` is given more than once");
    // The second occurrence: the first one's value is not part of the span.
    assert_eq!(at, "worker_threads");
    let err = expand(
        Kind::Test,
        tokens("worker_threads = 2, worker_threads = 3"),
        tokens("async fn t() {}"),
    )
    .unwrap_err();
    assert_eq!(err.span().start().column, "worker_threads = 2, ".len());
}

#[test]
fn parameters_are_an_error_on_the_parameters() {
    let (msg, at) = expand_err(Kind::Main, "", "async fn main(argc: i32) {}");
    assert_eq!(msg, "the main function cannot accept arguments");
    assert_eq!(at, "argc: i32");

    let (msg, at) = expand_err(Kind::Test, "", "async fn t(a: u8, b: u8) {}");
    assert_eq!(msg, "a test function cannot accept arguments");
    assert_eq!(at, "a: u8, b: u8");
}

#[test]
fn a_second_test_attribute_is_an_error() {
    for attr in ["#[test]", "#[::core::prelude::v1::test]"] {
        let (msg, at) = expand_err(Kind::Test, "", &format!("{attr} async fn t() {{}}"));
        assert_eq!(
            msg,
            "#[weft::test] already adds `#[test]`; remove this attribute"
        );
        assert_eq!(at, attr);
    }
    // Attributes that merely end in `test` are the user's business.
    expand_ok(Kind::Test, "", "#[serial_test::test] async fn t() {}");
}

#[test]
fn a_non_function_is_an_error() {
    let (msg, _) = expand_err(Kind::Main, "", "struct Main;");
    assert!(msg.contains("expected `fn`"), "{msg}");
}
