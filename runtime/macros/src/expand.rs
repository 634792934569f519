//! The expansion, over `proc_macro2` tokens so unit tests can call it.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::{Expr, ExprLit, ItemFn, Lit, LitInt, LitStr};

/// Which attribute is being expanded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Main,
    Test,
}

impl Kind {
    fn attribute(self) -> &'static str {
        match self {
            Kind::Main => "#[weft::main]",
            Kind::Test => "#[weft::test]",
        }
    }

    /// Workers when the user gives none: `None` leaves it to the runtime.
    fn default_worker_threads(self) -> Option<usize> {
        match self {
            Kind::Main => None,
            Kind::Test => Some(2),
        }
    }
}

/// The runtime flavours the attributes can build (tokio's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    MultiThread,
    CurrentThread,
    ThreadPerCore,
}

impl Flavor {
    fn builder(self, span: Span) -> TokenStream {
        match self {
            Flavor::MultiThread => {
                quote_spanned!(span=> ::weft::runtime::Builder::new_multi_thread())
            }
            Flavor::CurrentThread => {
                quote_spanned!(span=> ::weft::runtime::Builder::new_current_thread())
            }
            Flavor::ThreadPerCore => {
                quote_spanned!(span=> ::weft::runtime::Builder::new_thread_per_core())
            }
        }
    }
}

/// The parsed attribute arguments.
#[derive(Debug, Default)]
struct Args {
    /// The value and the span of the literal it came from.
    worker_threads: Option<(usize, Span)>,
    /// As above.
    flavor: Option<(Flavor, Span)>,
}

/// Expands `#[weft::main(args)]` / `#[weft::test(args)]` applied to `item`.
pub(crate) fn expand(
    kind: Kind,
    args: TokenStream,
    item: TokenStream,
) -> Result<TokenStream, syn::Error> {
    let args = parse_args(args)?;
    let mut item: ItemFn = syn::parse2(item)?;
    check_signature(kind, &item)?;

    item.sig.asyncness = None;
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = item;

    let (flavor, flavor_span) = args
        .flavor
        .unwrap_or((Flavor::MultiThread, Span::call_site()));
    if flavor == Flavor::CurrentThread {
        if let Some((_, span)) = args.worker_threads {
            return Err(syn::Error::new(
                span,
                "`worker_threads` is not allowed with `flavor = \"current_thread\"`: \
                 its only worker is the thread that runs the function",
            ));
        }
    }
    let builder = flavor.builder(flavor_span);
    let worker_threads = args
        .worker_threads
        .or_else(|| {
            if flavor == Flavor::CurrentThread {
                return None;
            }
            kind.default_worker_threads()
                .map(|n| (n, Span::call_site()))
        })
        .map(|(n, span)| {
            let n = LitInt::new(&n.to_string(), span);
            quote_spanned!(span=> .worker_threads(#n))
        });
    let test_attr = match kind {
        Kind::Main => None,
        Kind::Test => Some(quote!(#[::core::prelude::v1::test])),
    };

    Ok(quote! {
        #test_attr
        #(#attrs)*
        #vis #sig {
            #builder
                #worker_threads
                .build()
                .expect("failed to build the weft runtime")
                .block_on(async move #block)
        }
    })
}

fn parse_args(args: TokenStream) -> Result<Args, syn::Error> {
    let mut parsed = Args::default();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("worker_threads") {
            if parsed.worker_threads.is_some() {
                return Err(meta.error("`worker_threads` is given more than once"));
            }
            let value: Expr = meta.value()?.parse()?;
            parsed.worker_threads = Some(parse_worker_threads(&value)?);
            return Ok(());
        }
        if meta.path.is_ident("flavor") {
            if parsed.flavor.is_some() {
                return Err(meta.error("`flavor` is given more than once"));
            }
            let value: LitStr = meta.value()?.parse()?;
            let flavor = match value.value().as_str() {
                "multi_thread" => Flavor::MultiThread,
                "current_thread" => Flavor::CurrentThread,
                "thread_per_core" => Flavor::ThreadPerCore,
                other => {
                    return Err(syn::Error::new(
                        value.span(),
                        format_args!(
                            "unknown flavor `{other}`; expected `multi_thread`, \
                             `current_thread` or `thread_per_core`"
                        ),
                    ))
                }
            };
            parsed.flavor = Some((flavor, value.span()));
            return Ok(());
        }
        Err(meta.error(format_args!(
            "unknown argument `{}`; the arguments are `worker_threads = N` and \
             `flavor = \"multi_thread\" | \"current_thread\" | \"thread_per_core\"`",
            path_to_string(&meta.path),
        )))
    });
    syn::parse::Parser::parse2(parser, args)?;
    Ok(parsed)
}

fn parse_worker_threads(value: &Expr) -> Result<(usize, Span), syn::Error> {
    let Expr::Lit(ExprLit {
        lit: Lit::Int(lit), ..
    }) = value
    else {
        return Err(syn::Error::new_spanned(
            value,
            "`worker_threads` must be an integer literal, e.g. `worker_threads = 4`",
        ));
    };
    let n: usize = lit.base10_parse()?;
    if n == 0 {
        return Err(syn::Error::new(
            lit.span(),
            "`worker_threads` must be at least 1",
        ));
    }
    Ok((n, lit.span()))
}

fn check_signature(kind: Kind, item: &ItemFn) -> Result<(), syn::Error> {
    let sig = &item.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(
            sig.fn_token.span,
            "the `async` keyword is missing from the function declaration",
        ));
    }
    if !sig.inputs.is_empty() {
        let what = match kind {
            Kind::Main => "the main function cannot accept arguments",
            Kind::Test => "a test function cannot accept arguments",
        };
        return Err(syn::Error::new_spanned(&sig.inputs, what));
    }
    if kind == Kind::Main
        && (!sig.generics.params.is_empty() || sig.generics.where_clause.is_some())
    {
        return Err(syn::Error::new_spanned(
            &sig.generics,
            "the main function cannot be generic",
        ));
    }
    if kind == Kind::Test {
        if let Some(attr) = item.attrs.iter().find(|attr| is_test_attr(attr)) {
            return Err(syn::Error::new_spanned(
                attr,
                format_args!(
                    "{} already adds `#[test]`; remove this attribute",
                    kind.attribute()
                ),
            ));
        }
    }
    Ok(())
}

/// `#[test]`, or the same attribute by its full path
/// (`#[::core::prelude::v1::test]`, `#[std::prelude::rust_2021::test]`).
fn is_test_attr(attr: &syn::Attribute) -> bool {
    const PRELUDE: [&str; 8] = [
        "core",
        "std",
        "prelude",
        "v1",
        "rust_2015",
        "rust_2018",
        "rust_2021",
        "rust_2024",
    ];
    let mut segments = attr.path().segments.iter().rev();
    segments.next().is_some_and(|last| last.ident == "test")
        && segments.all(|s| PRELUDE.iter().any(|p| s.ident == p))
}

fn path_to_string(path: &syn::Path) -> String {
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    segments.join("::")
}

#[cfg(test)]
mod tests;
