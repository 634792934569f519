/// Waits on several futures at once and runs the handler of the first to
/// complete, dropping the others. The syntax and rules are tokio's:
///
/// ```text
/// weft::select! {
///     biased;                                   // optional: poll in order
///     <pattern> = <future> (, if <condition>)? => <handler>,
///     ...
///     else => <handler>,                        // optional
/// }
/// ```
///
/// 1. Every `<condition>` is evaluated; a branch whose condition is false
///    is disabled. Then every `<future>` expression is evaluated (any
///    `IntoFuture`, disabled branches included), in order.
/// 2. The futures are polled in the calling task, starting from a random
///    branch each time (from the first with `biased;`). No `Unpin` or
///    `FusedFuture` is needed: the futures are pinned in place.
/// 3. When one completes, its output is matched against `<pattern>`. On a
///    match, **every future is dropped** — the losers are cancelled by
///    drop, the usual Rust way — and the handler runs with the pattern's
///    bindings. On no match the branch is disabled and the rest go on.
/// 4. If every branch is disabled, the `else` handler runs; without one,
///    `select!` panics.
///
/// The handlers run after the `select!`'s own future, outside any closure
/// or loop of the macro: `break`, `continue`, `return` and `?` in a
/// handler act on the code around the `select!`. All handlers must have
/// the same type, which is the value of the `select!`.
///
/// `select!` itself is not a weft await point; its branches are. In a
/// cancelled scope a weft branch (a `sleep`, a `recv`, a socket op)
/// completes at once with the cancellation, so a `select!` over weft
/// futures does not hang in a cancelled task, while one over foreign
/// futures alone can (wrap them with
/// [`cancellable`](crate::cancel::cancellable)).
///
/// Why not futures-util's `select!`: it spells `biased;` as
/// `select_biased!` and `else` as `complete`/`default`, and it needs every
/// future to be `FusedFuture` (neither `async` blocks nor weft's futures
/// are), so code moved from tokio would not compile. Up to 64 branches,
/// as tokio (patterns of more than three token trees, such as
/// `Message::Data(x)`, use more of the macro recursion limit: beyond ~40
/// such branches, raise `#![recursion_limit]`).
///
/// ```
/// use std::time::Duration;
///
/// # let rt = weft::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
/// # rt.block_on(rt.spawn(async {
/// let (tx, rx) = futures_channel::oneshot::channel::<u32>();
/// tx.send(7).unwrap();
/// let out = weft::select! {
///     Ok(v) = rx => v,
///     _ = weft::time::sleep(Duration::from_secs(5)) => 0,
/// };
/// assert_eq!(out, 7);
///
/// // `biased;` polls in order; a refused pattern disables its branch.
/// let out = weft::select! {
///     biased;
///     Some(x) = async { None::<u32> } => x,
///     y = async { 2 } => y,
///     else => 3,
/// };
/// assert_eq!(out, 2);
/// # })).unwrap();
/// ```
#[macro_export]
macro_rules! select {
    (biased; $($t:tt)*) => {
        $crate::__weft_select!(@parse [true] [] () $($t)*)
    };
    ($($t:tt)*) => {
        $crate::__weft_select!(@parse [false] [] () $($t)*)
    };
}

/// The parser and code generator behind [`select!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __weft_select {
    // --- branches: the pattern, token by token up to the top-level `=` ---
    (@parse $b:tt $done:tt $d:tt) => {
        $crate::__weft_select!(@emit $b $done $d { ::core::panic!("all branches of `weft::select!` are disabled and there is no `else` branch") })
    };
    (@parse $b:tt $done:tt $d:tt else => { $($h:tt)* } $(,)?) => {
        $crate::__weft_select!(@emit $b $done $d { $($h)* })
    };
    (@parse $b:tt $done:tt $d:tt else => $h:expr $(,)?) => {
        $crate::__weft_select!(@emit $b $done $d { $h })
    };
    // --- branches whose pattern is 1 to 3 token trees (nearly all): one
    // step per branch, so 64 branches stay within the default recursion
    // limit. Longer patterns are read token by token (`@pat`).
    (@parse $b:tt [$($done:tt)*] ($($d:tt)*) $p1:tt = $f:expr, if $c:expr => { $($h:tt)* }, $($rest:tt)*) => {
        $crate::__weft_select!(@parse $b [$($done)* { fut [$p1] ($c) ($f) { $($h)* } ($($d)*) }] ($($d)* _) $($rest)*)
    };
    (@parse $b:tt [$($done:tt)*] ($($d:tt)*) $p1:tt = $f:expr, if $c:expr => { $($h:tt)* } $($rest:tt)*) => {
        $crate::__weft_select!(@parse $b [$($done)* { fut [$p1] ($c) ($f) { $($h)* } ($($d)*) }] ($($d)* _) $($rest)*)
    };
    (@parse $b:tt [$($done:tt)*] ($($d:tt)*) $p1:tt = $f:expr, if $c:expr => $h:expr, $($rest:tt)*) => {
        $crate::__weft_select!(@parse $b [$($done)* { fut [$p1] ($c) ($f) { $h } ($($d)*) }] ($($d)* _) $($rest)*)
    };
    (@parse $b:tt [$($done:tt)*] ($($d:tt)*) $p1:tt = $f:expr, if $c:expr => $h:expr) => {
        $crate::__weft_select!(@parse $b [$($done)* { fut [$p1] ($c) ($f) { $h } ($($d)*) }] ($($d)* _) )
    };
    (@parse $b:tt [$($done:tt)*] ($($d:tt)*) $p1:tt = $f:expr => { $($h:tt)* }, $($rest:tt)*) => {
        $crate::__weft_select!(@parse $b [$($done)* { fut [$p1] (true) ($f) { $($h)* } ($($d)*) }] ($($d)* _) $($rest)*)
    };
    (@parse $b:tt [$($done:tt)*] ($($d:tt)*) $p1:tt = $f:expr => { $($h:tt)* } $($rest:tt)*) => {
        $crate::__weft_select!(@parse $b [$($done)* { fut [$p1] (true) ($f) { $($h)* } ($($d)*) }] ($($d)* _) $($rest)*)
    };
    (@parse $b:tt [$($done:tt)*] ($($d:tt)*) $p1:tt = $f:expr => $h:expr, $($rest:tt)*) => {
        $crate::__weft_select!(@parse $b [$($done)* { fut [$p1] (true) ($f) { $h } ($($d)*) }] ($($d)* _) $($rest)*)
    };
    (@parse $b:tt [$($done:tt)*] ($($d:tt)*) $p1:tt = $f:expr => $h:expr) => {
        $crate::__weft_select!(@parse $b [$($done)* { fut [$p1] (true) ($f) { $h } ($($d)*) }] ($($d)* _) )
    };
    (@parse $b:tt [$($done:tt)*] ($($d:tt)*) $p1:tt $p2:tt = $f:expr, if $c:expr => { $($h:tt)* }, $($rest:tt)*) => {
        $crate::__weft_select!(@parse $b [$($done)* { fut [$p1 $p2] ($c) ($f) { $($h)* } ($($d)*) }] ($($d)* _) $($rest)*)
    };
    (@parse $b:tt [$($done:tt)*] ($($d:tt)*) $p1:tt $p2:tt = $f:expr, if $c:expr => { $($h:tt)* } $($rest:tt)*) => {
        $crate::__weft_select!(@parse $b [$($done)* { fut [$p1 $p2] ($c) ($f) { $($h)* } ($($d)*) }] ($($d)* _) $($rest)*)
    };
    (@parse $b:tt [$($done:tt)*] ($($d:tt)*) $p1:tt $p2:tt = $f:expr, if $c:expr => $h:expr, $($rest:tt)*) => {
        $crate::__weft_select!(@parse $b [$($done)* { fut [$p1 $p2] ($c) ($f) { $h } ($($d)*) }] ($($d)* _) $($rest)*)
    };
    (@parse $b:tt [$($done:tt)*] ($($d:tt)*) $p1:tt $p2:tt = $f:expr, if $c:expr => $h:expr) => {
        $crate::__weft_select!(@parse $b [$($done)* { fut [$p1 $p2] ($c) ($f) { $h } ($($d)*) }] ($($d)* _) )
    };
    (@parse $b:tt [$($done:tt)*] ($($d:tt)*) $p1:tt $p2:tt = $f:expr => { $($h:tt)* }, $($rest:tt)*) => {
        $crate::__weft_select!(@parse $b [$($done)* { fut [$p1 $p2] (true) ($f) { $($h)* } ($($d)*) }] ($($d)* _) $($rest)*)
    };
    (@parse $b:tt [$($done:tt)*] ($($d:tt)*) $p1:tt $p2:tt = $f:expr => { $($h:tt)* } $($rest:tt)*) => {
        $crate::__weft_select!(@parse $b [$($done)* { fut [$p1 $p2] (true) ($f) { $($h)* } ($($d)*) }] ($($d)* _) $($rest)*)
    };
    (@parse $b:tt [$($done:tt)*] ($($d:tt)*) $p1:tt $p2:tt = $f:expr => $h:expr, $($rest:tt)*) => {
        $crate::__weft_select!(@parse $b [$($done)* { fut [$p1 $p2] (true) ($f) { $h } ($($d)*) }] ($($d)* _) $($rest)*)
    };
    (@parse $b:tt [$($done:tt)*] ($($d:tt)*) $p1:tt $p2:tt = $f:expr => $h:expr) => {
        $crate::__weft_select!(@parse $b [$($done)* { fut [$p1 $p2] (true) ($f) { $h } ($($d)*) }] ($($d)* _) )
    };
    (@parse $b:tt [$($done:tt)*] ($($d:tt)*) $p1:tt $p2:tt $p3:tt = $f:expr, if $c:expr => { $($h:tt)* }, $($rest:tt)*) => {
        $crate::__weft_select!(@parse $b [$($done)* { fut [$p1 $p2 $p3] ($c) ($f) { $($h)* } ($($d)*) }] ($($d)* _) $($rest)*)
    };
    (@parse $b:tt [$($done:tt)*] ($($d:tt)*) $p1:tt $p2:tt $p3:tt = $f:expr, if $c:expr => { $($h:tt)* } $($rest:tt)*) => {
        $crate::__weft_select!(@parse $b [$($done)* { fut [$p1 $p2 $p3] ($c) ($f) { $($h)* } ($($d)*) }] ($($d)* _) $($rest)*)
    };
    (@parse $b:tt [$($done:tt)*] ($($d:tt)*) $p1:tt $p2:tt $p3:tt = $f:expr, if $c:expr => $h:expr, $($rest:tt)*) => {
        $crate::__weft_select!(@parse $b [$($done)* { fut [$p1 $p2 $p3] ($c) ($f) { $h } ($($d)*) }] ($($d)* _) $($rest)*)
    };
    (@parse $b:tt [$($done:tt)*] ($($d:tt)*) $p1:tt $p2:tt $p3:tt = $f:expr, if $c:expr => $h:expr) => {
        $crate::__weft_select!(@parse $b [$($done)* { fut [$p1 $p2 $p3] ($c) ($f) { $h } ($($d)*) }] ($($d)* _) )
    };
    (@parse $b:tt [$($done:tt)*] ($($d:tt)*) $p1:tt $p2:tt $p3:tt = $f:expr => { $($h:tt)* }, $($rest:tt)*) => {
        $crate::__weft_select!(@parse $b [$($done)* { fut [$p1 $p2 $p3] (true) ($f) { $($h)* } ($($d)*) }] ($($d)* _) $($rest)*)
    };
    (@parse $b:tt [$($done:tt)*] ($($d:tt)*) $p1:tt $p2:tt $p3:tt = $f:expr => { $($h:tt)* } $($rest:tt)*) => {
        $crate::__weft_select!(@parse $b [$($done)* { fut [$p1 $p2 $p3] (true) ($f) { $($h)* } ($($d)*) }] ($($d)* _) $($rest)*)
    };
    (@parse $b:tt [$($done:tt)*] ($($d:tt)*) $p1:tt $p2:tt $p3:tt = $f:expr => $h:expr, $($rest:tt)*) => {
        $crate::__weft_select!(@parse $b [$($done)* { fut [$p1 $p2 $p3] (true) ($f) { $h } ($($d)*) }] ($($d)* _) $($rest)*)
    };
    (@parse $b:tt [$($done:tt)*] ($($d:tt)*) $p1:tt $p2:tt $p3:tt = $f:expr => $h:expr) => {
        $crate::__weft_select!(@parse $b [$($done)* { fut [$p1 $p2 $p3] (true) ($f) { $h } ($($d)*) }] ($($d)* _) )
    };
    (@parse $b:tt $done:tt $d:tt $($rest:tt)+) => {
        $crate::__weft_select!(@pat $b $done $d [] $($rest)+)
    };
    (@pat $b:tt $done:tt $d:tt [$($p:tt)*] = $($rest:tt)*) => {
        $crate::__weft_select!(@fut $b $done $d [$($p)*] $($rest)*)
    };
    (@pat $b:tt $done:tt $d:tt [$($p:tt)*] $t:tt $($rest:tt)*) => {
        $crate::__weft_select!(@pat $b $done $d [$($p)* $t] $($rest)*)
    };
    // --- the future, the condition and the handler ---
    (@fut $b:tt [$($done:tt)*] ($($d:tt)*) [$($p:tt)*] $f:expr, if $c:expr => { $($h:tt)* }, $($rest:tt)*) => {
        $crate::__weft_select!(@parse $b [$($done)* { fut [$($p)*] ($c) ($f) { $($h)* } ($($d)*) }] ($($d)* _) $($rest)*)
    };
    (@fut $b:tt [$($done:tt)*] ($($d:tt)*) [$($p:tt)*] $f:expr, if $c:expr => { $($h:tt)* } $($rest:tt)*) => {
        $crate::__weft_select!(@parse $b [$($done)* { fut [$($p)*] ($c) ($f) { $($h)* } ($($d)*) }] ($($d)* _) $($rest)*)
    };
    (@fut $b:tt [$($done:tt)*] ($($d:tt)*) [$($p:tt)*] $f:expr, if $c:expr => $h:expr, $($rest:tt)*) => {
        $crate::__weft_select!(@parse $b [$($done)* { fut [$($p)*] ($c) ($f) { $h } ($($d)*) }] ($($d)* _) $($rest)*)
    };
    (@fut $b:tt [$($done:tt)*] ($($d:tt)*) [$($p:tt)*] $f:expr, if $c:expr => $h:expr) => {
        $crate::__weft_select!(@parse $b [$($done)* { fut [$($p)*] ($c) ($f) { $h } ($($d)*) }] ($($d)* _))
    };
    (@fut $b:tt [$($done:tt)*] ($($d:tt)*) [$($p:tt)*] $f:expr => { $($h:tt)* }, $($rest:tt)*) => {
        $crate::__weft_select!(@parse $b [$($done)* { fut [$($p)*] (true) ($f) { $($h)* } ($($d)*) }] ($($d)* _) $($rest)*)
    };
    (@fut $b:tt [$($done:tt)*] ($($d:tt)*) [$($p:tt)*] $f:expr => { $($h:tt)* } $($rest:tt)*) => {
        $crate::__weft_select!(@parse $b [$($done)* { fut [$($p)*] (true) ($f) { $($h)* } ($($d)*) }] ($($d)* _) $($rest)*)
    };
    (@fut $b:tt [$($done:tt)*] ($($d:tt)*) [$($p:tt)*] $f:expr => $h:expr, $($rest:tt)*) => {
        $crate::__weft_select!(@parse $b [$($done)* { fut [$($p)*] (true) ($f) { $h } ($($d)*) }] ($($d)* _) $($rest)*)
    };
    (@fut $b:tt [$($done:tt)*] ($($d:tt)*) [$($p:tt)*] $f:expr => $h:expr) => {
        $crate::__weft_select!(@parse $b [$($done)* { fut [$($p)*] (true) ($f) { $h } ($($d)*) }] ($($d)* _))
    };
    // --- code ---
    // Each branch's `fut` ident was written by a different expansion of the
    // `@fut` rules, so hygiene makes them distinct variables.
    (@emit [$biased:tt]
        [$({ $fut:ident [$($p:tt)*] ($c:expr) ($f:expr) { $($h:tt)* } ($($d:tt)*) })*]
        ($($all:tt)*)
        { $($else:tt)* }
    ) => {{
        const __WEFT_BRANCHES: u32 = 0 $(+ $crate::__weft_select!(@one $all))*;
        const _: () = ::core::assert!(__WEFT_BRANCHES <= 64, "`weft::select!` takes at most 64 branches");
        let mut __weft_disabled: u64 = 0;
        $(
            if !$c {
                __weft_disabled |= 1u64 << (0 $(+ $crate::__weft_select!(@one $d))*);
            }
        )*
        let __weft_output = {
            $( let mut $fut = $crate::__private::IntoFuture::into_future($f); )*
            $crate::__private::poll_fn(|__weft_cx| {
                let __weft_start = if $biased { 0 } else { $crate::__private::select_start(__WEFT_BRANCHES) };
                let mut __weft_pending = false;
                for __weft_i in 0..__WEFT_BRANCHES {
                    let mut __weft_branch = __weft_start + __weft_i;
                    if __weft_branch >= __WEFT_BRANCHES {
                        __weft_branch -= __WEFT_BRANCHES;
                    }
                    $(
                        if __weft_branch == (0 $(+ $crate::__weft_select!(@one $d))*) {
                            if __weft_disabled & (1u64 << __weft_branch) != 0 {
                                continue;
                            }
                            // SAFETY: the future is a local of this block,
                            // never moved after this point and dropped in
                            // place when the block ends; user code cannot
                            // name it (hygiene).
                            let __weft_f = unsafe { $crate::__private::Pin::new_unchecked(&mut $fut) };
                            match $crate::__private::Future::poll(__weft_f, __weft_cx) {
                                $crate::__private::Poll::Ready(__weft_out) => {
                                    #[allow(unused_variables, unused_mut)]
                                    match &__weft_out {
                                        $crate::__weft_select_clean!(@c [] [] $($p)*) => {}
                                        #[allow(unreachable_patterns)]
                                        _ => {
                                            __weft_disabled |= 1u64 << __weft_branch;
                                            continue;
                                        }
                                    }
                                    return $crate::__private::Poll::Ready(
                                        $crate::__weft_select_wrap!(($($d)*) __weft_out),
                                    );
                                }
                                $crate::__private::Poll::Pending => {
                                    __weft_pending = true;
                                    continue;
                                }
                            }
                        }
                    )*
                }
                if __weft_pending {
                    $crate::__private::Poll::Pending
                } else {
                    $crate::__private::Poll::Ready(
                        $crate::__weft_select_end!(($($all)*) $crate::__private::AllDisabled),
                    )
                }
            })
            .await
        };
        // The futures are dropped here, before any handler runs.
        match __weft_output {
            $( $crate::__weft_select_wrap!(($($d)*) $($p)*) => { $($h)* } )*
            $crate::__weft_select_end!(($($all)*) $crate::__private::AllDisabled) => { $($else)* }
            #[allow(unreachable_patterns)]
            _ => ::core::unreachable!("`weft::select!`: a branch's pattern was checked before"),
        }
    }};
    (@one $t:tt) => { 1 };
}

/// `Either::Right` once per `_`, then `Either::Left(x)`: branch `k`'s slot
/// in the output (as an expression or a pattern).
#[doc(hidden)]
#[macro_export]
macro_rules! __weft_select_wrap {
    (() $($x:tt)*) => { $crate::__private::Either::Left($($x)*) };
    // Four levels a step: the depth adds to the parser's.
    ((_ _ _ _ $($d:tt)*) $($x:tt)*) => {
        $crate::__private::Either::Right($crate::__private::Either::Right(
            $crate::__private::Either::Right($crate::__private::Either::Right(
                $crate::__weft_select_wrap!(($($d)*) $($x)*),
            )),
        ))
    };
    ((_ $($d:tt)*) $($x:tt)*) => {
        $crate::__private::Either::Right($crate::__weft_select_wrap!(($($d)*) $($x)*))
    };
}

/// `Either::Right` once per `_` around `x`: the "all disabled" slot.
#[doc(hidden)]
#[macro_export]
macro_rules! __weft_select_end {
    (() $($x:tt)*) => { $($x)* };
    ((_ _ _ _ $($d:tt)*) $($x:tt)*) => {
        $crate::__private::Either::Right($crate::__private::Either::Right(
            $crate::__private::Either::Right($crate::__private::Either::Right(
                $crate::__weft_select_end!(($($d)*) $($x)*),
            )),
        ))
    };
    ((_ $($d:tt)*) $($x:tt)*) => {
        $crate::__private::Either::Right($crate::__weft_select_end!(($($d)*) $($x)*))
    };
}

/// A pattern without `mut` and `ref`, to test a branch's output by
/// reference before it is moved (tokio strips them the same way). Groups
/// are walked with an explicit stack: `[kind [tokens before] [tokens after]]`.
#[doc(hidden)]
#[macro_export]
macro_rules! __weft_select_clean {
    (@c $s:tt [$($a:tt)*] mut $($r:tt)*) => { $crate::__weft_select_clean!(@c $s [$($a)*] $($r)*) };
    (@c $s:tt [$($a:tt)*] ref $($r:tt)*) => { $crate::__weft_select_clean!(@c $s [$($a)*] $($r)*) };
    (@c [$($s:tt)*] [$($a:tt)*] ( $($g:tt)* ) $($r:tt)*) => {
        $crate::__weft_select_clean!(@c [[paren [$($a)*] [$($r)*]] $($s)*] [] $($g)*)
    };
    (@c [$($s:tt)*] [$($a:tt)*] [ $($g:tt)* ] $($r:tt)*) => {
        $crate::__weft_select_clean!(@c [[bracket [$($a)*] [$($r)*]] $($s)*] [] $($g)*)
    };
    (@c [$($s:tt)*] [$($a:tt)*] { $($g:tt)* } $($r:tt)*) => {
        $crate::__weft_select_clean!(@c [[brace [$($a)*] [$($r)*]] $($s)*] [] $($g)*)
    };
    (@c $s:tt [$($a:tt)*] $t:tt $($r:tt)*) => { $crate::__weft_select_clean!(@c $s [$($a)* $t] $($r)*) };
    (@c [[paren [$($pa:tt)*] [$($pr:tt)*]] $($s:tt)*] [$($a:tt)*]) => {
        $crate::__weft_select_clean!(@c [$($s)*] [$($pa)* ( $($a)* )] $($pr)*)
    };
    (@c [[bracket [$($pa:tt)*] [$($pr:tt)*]] $($s:tt)*] [$($a:tt)*]) => {
        $crate::__weft_select_clean!(@c [$($s)*] [$($pa)* [ $($a)* ]] $($pr)*)
    };
    (@c [[brace [$($pa:tt)*] [$($pr:tt)*]] $($s:tt)*] [$($a:tt)*]) => {
        $crate::__weft_select_clean!(@c [$($s)*] [$($pa)* { $($a)* }] $($pr)*)
    };
    (@c [] [$($a:tt)*]) => { $($a)* };
}
