//! The `#[limit_rate]` attribute for tollgate: rate-limit every call of a function.
//!
//! Do not depend on this crate directly. Each adapter re-exports the flavour that fits it under
//! the name `limit_rate`, and the generated code names that adapter:
//!
//! | import                           | for        | waits with                                       |
//! | -------------------------------- | ---------- | ------------------------------------------------ |
//! | `tollgate_tokio::limit_rate`     | `async fn` | `AsyncRateLimiter` on tokio's timer              |
//! | `tollgate_async_std::limit_rate` | `async fn` | `AsyncRateLimiter` on async-io (async-std, smol) |
//! | `tollgate_embassy::limit_rate`   | `async fn` | `AsyncRateLimiter` on embassy-time (`no_std`)    |
//! | `tollgate_std::limit_rate`       | plain `fn` | `RateLimiter`, blocking the calling thread       |
//!
//! # Arguments
//!
//! - `requests_per_second = N` (an integer ≥ 1), optionally with `burst = M` (default `N`):
//!   the function gets its own limiter, a `static` built in const context, so it needs no
//!   allocator and works on embassy too. All calls of the function share it, across threads
//!   and tasks, and generic functions share one limiter for all their instantiations.
//! - `limiter = LIMITER`: every call first runs `LIMITER.acquire().await` (async) or
//!   `LIMITER.acquire()` (blocking). Name the same `static` (or `LazyLock`) on several
//!   functions and they share one budget. `LIMITER` may be any expression valid at the top of
//!   the body, such as `self.limiter` or a field of an argument. Anything with such an `acquire` method
//!   works; its result must not be `#[must_use]` (a future passed to the blocking flavour is a
//!   compile error rather than a silent no-op).
//! - `crate = path`: where to find the adapter if you renamed it in `Cargo.toml`.
//!
//! Fractional rates, other periods and computed rates go through a named limiter, which is
//! also how several functions share one budget:
//!
//! ```
//! use core::time::Duration;
//! use tollgate_macros::limit_rate_tokio as limit_rate; // i.e. `use tollgate_tokio::limit_rate;`
//! use tollgate_tokio::{AsyncRateLimiter, Rate, TokioTimer};
//!
//! #[limit_rate(requests_per_second = 5)] // its own limiter: bursts of 5, then 5 per second
//! async fn send_email(to: &str) -> usize {
//!     to.len()
//! }
//!
//! // 0.4 per second, one at a time, shared by both functions below.
//! static SLOW_API: AsyncRateLimiter =
//!     AsyncRateLimiter::with_timer(Rate::new(2, Duration::from_secs(5)), 1, TokioTimer::new());
//!
//! #[limit_rate(limiter = SLOW_API)]
//! async fn fetch_user(id: u32) -> u32 {
//!     id
//! }
//!
//! #[limit_rate(limiter = SLOW_API)]
//! async fn fetch_order(id: u32) -> u32 {
//!     id
//! }
//!
//! #[tokio::main(flavor = "current_thread", start_paused = true)]
//! async fn main() {
//!     let start = tokio::time::Instant::now();
//!     send_email("ops@example.com").await;
//!     fetch_user(1).await;
//!     fetch_order(2).await; // waits for the shared budget: 2.5 s
//!     assert_eq!(start.elapsed(), Duration::from_millis(2_500));
//! }
//! ```
//!
//! The attribute keeps the function's attributes, visibility, generics, `where` clause and
//! receiver; only a statement that waits for a token is added in front of the body. So an
//! `async fn` takes its token when its future is first polled, not when it is called.
//!
//! # Cancel safety
//!
//! An async function's future that is dropped while waiting for its token gives the token back
//! as [`AsyncRateLimiter::acquire`] documents; dropped later, the token stays spent.
//!
//! [`AsyncRateLimiter::acquire`]: https://docs.rs/tollgate/latest/tollgate/struct.AsyncRateLimiter.html#method.acquire

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{ToTokens, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{AttrStyle, Expr, ExprLit, ExprUnary, Ident, ItemFn, Lit, Path, Token, UnOp};

/// `#[limit_rate]` for `async fn`s on tokio, re-exported as `tollgate_tokio::limit_rate`.
///
/// See the [crate documentation](crate) for the arguments.
///
/// ```
/// use tollgate_macros::limit_rate_tokio as limit_rate; // i.e. `use tollgate_tokio::limit_rate;`
///
/// #[limit_rate(requests_per_second = 10, burst = 2)]
/// async fn fetch(id: u32) -> u32 {
///     id
/// }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() { assert_eq!(fetch(7).await, 7); }
/// ```
#[proc_macro_attribute]
pub fn limit_rate_tokio(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(&TOKIO, args.into(), item.into()).into()
}

/// `#[limit_rate]` for `async fn`s on async-std or smol, re-exported as
/// `tollgate_async_std::limit_rate`.
///
/// See the [crate documentation](crate) for the arguments.
#[proc_macro_attribute]
pub fn limit_rate_async_std(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(&ASYNC_STD, args.into(), item.into()).into()
}

/// `#[limit_rate]` for `async fn`s on embassy, re-exported as `tollgate_embassy::limit_rate`.
///
/// The per-function limiter is a `static` built in const context, so it needs no allocator.
/// See the [crate documentation](crate) for the arguments.
#[proc_macro_attribute]
pub fn limit_rate_embassy(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(&EMBASSY, args.into(), item.into()).into()
}

/// `#[limit_rate]` for plain (blocking) `fn`s, re-exported as `tollgate_std::limit_rate`: each
/// call blocks the calling thread until its token is ready.
///
/// See the [crate documentation](crate) for the arguments.
///
/// ```
/// use tollgate_macros::limit_rate_std as limit_rate; // i.e. `use tollgate_std::limit_rate;`
///
/// #[limit_rate(requests_per_second = 5)]
/// fn send_email(to: &str) -> usize {
///     to.len() // at most 5 calls per second, from all threads together
/// }
///
/// assert_eq!(send_email("ops@example.com"), 15);
/// ```
#[proc_macro_attribute]
pub fn limit_rate_std(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(&STD, args.into(), item.into()).into()
}

/// What one flavour of the attribute generates.
///
/// A function's own limiter is built through the adapter's hidden `__limit_rate` module
/// (declared by `tollgate::__adapter_aliases!`): `static _: krate::__limit_rate::Limiter =
/// krate::__limit_rate::new(rate, burst);`, a `const fn`. So the macro names no limiter or timer
/// type: each adapter decides what its functions wait on.
struct Flavor {
    /// The adapter crate the generated code names, e.g. `tollgate_tokio`.
    krate: &'static str,
    /// `true` for the blocking flavour: sync fns, and a limiter whose `acquire` blocks.
    blocking: bool,
}

const TOKIO: Flavor = Flavor { krate: "tollgate_tokio", blocking: false };
const ASYNC_STD: Flavor = Flavor { krate: "tollgate_async_std", blocking: false };
const EMBASSY: Flavor = Flavor { krate: "tollgate_embassy", blocking: false };
const STD: Flavor = Flavor { krate: "tollgate_std", blocking: true };

/// The largest burst a `TokenBucket` accepts is below this.
const BURST_LIMIT: u64 = 1 << 61;

/// Where the function's token comes from.
enum Source {
    /// Its own `static` limiter.
    Own { per_second: u64, burst: u64 },
    /// A shared limiter expression.
    Shared(Box<Expr>),
}

struct Args {
    source: Source,
    krate: Option<Path>,
}

fn expand(flavor: &Flavor, args: TokenStream2, item: TokenStream2) -> TokenStream2 {
    let func = match syn::parse2::<ItemFn>(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            let err = match syn::parse2::<syn::TraitItemFn>(item.clone()) {
                Ok(decl) => syn::Error::new_spanned(
                    &decl.sig,
                    "`#[limit_rate]` needs a function with a body; on a trait method, put it on \
                     the method in each `impl` (or on a default body)",
                ),
                Err(_) => syn::Error::new(
                    Span::call_site(),
                    "`#[limit_rate]` applies to functions only (`fn`, `async fn`, methods)",
                ),
            };
            // Keep the item so that its users do not report a cascade of errors.
            let compile_errors = err.to_compile_error();
            return quote!(#compile_errors #item);
        }
    };
    let args = parse_args(args);
    let sig_check = check_signature(flavor, &func);
    match (args, sig_check) {
        (Ok(args), Ok(())) => generate(flavor, &args, func),
        (Err(mut e), Err(sig)) => {
            e.combine(sig);
            with_errors(e, &func)
        }
        (Err(e), Ok(())) | (Ok(_), Err(e)) => with_errors(e, &func),
    }
}

/// The errors, plus the function unchanged so that its callers compile.
fn with_errors(e: syn::Error, func: &ItemFn) -> TokenStream2 {
    let errors = e.to_compile_error();
    quote!(#errors #func)
}

fn check_signature(flavor: &Flavor, func: &ItemFn) -> syn::Result<()> {
    let sig = &func.sig;
    // Point at `async fn name` / `fn name`: what the user has to change.
    let head = {
        let (asyncness, fn_token, ident) = (&sig.asyncness, &sig.fn_token, &sig.ident);
        quote!(#asyncness #fn_token #ident)
    };
    if let Some(constness) = &sig.constness {
        return Err(syn::Error::new_spanned(
            quote!(#constness #head),
            "`#[limit_rate]` cannot be used on a `const fn`: waiting for a token happens at run time",
        ));
    }
    match (flavor.blocking, sig.asyncness.is_some()) {
        (true, true) => Err(syn::Error::new_spanned(
            head,
            "`tollgate_std::limit_rate` blocks the calling thread, so it cannot be used on an \
             `async fn` (it would stall the executor); import `limit_rate` from your runtime's \
             adapter instead: `tollgate_tokio`, `tollgate_async_std` or `tollgate_embassy`",
        )),
        (false, false) => Err(syn::Error::new_spanned(
            head,
            format!(
                "`{}::limit_rate` waits asynchronously, so it needs an `async fn`; for a \
                 blocking `fn`, import `limit_rate` from `tollgate_std` instead",
                flavor.krate
            ),
        )),
        _ => Ok(()),
    }
}

fn parse_args(args: TokenStream2) -> syn::Result<Args> {
    if args.is_empty() {
        return Err(syn::Error::new(
            Span::call_site(),
            "`#[limit_rate]` needs arguments: `requests_per_second = N` (optionally with \
             `burst = M`) for a limiter of its own, or `limiter = NAME` to share a limiter",
        ));
    }
    let pairs = Parser::parse2(
        |input: ParseStream<'_>| {
            let mut pairs = Vec::new();
            while !input.is_empty() {
                pairs.push(parse_pair(input)?);
                if input.is_empty() {
                    break;
                }
                input.parse::<Token![,]>()?;
            }
            Ok(pairs)
        },
        args,
    )?;

    let mut errors: Vec<syn::Error> = Vec::new();
    let (mut per_second, mut burst, mut limiter, mut krate) = (None, None, None, None);
    for (key, value) in pairs {
        let name = key.to_string();
        let slot_taken = match name.as_str() {
            "requests_per_second" => per_second.is_some(),
            "burst" => burst.is_some(),
            "limiter" => limiter.is_some(),
            "crate" => krate.is_some(),
            _ => false,
        };
        if slot_taken {
            errors.push(syn::Error::new(key.span(), format!("duplicate argument `{name}`")));
            continue;
        }
        match (name.as_str(), value) {
            ("requests_per_second", Value::Expr(e)) => match positive_integer(&name, &e) {
                Ok(n) => per_second = Some((key, n)),
                Err(e) => errors.push(e),
            },
            ("burst", Value::Expr(e)) => match positive_integer(&name, &e) {
                Ok(n) if n >= BURST_LIMIT => {
                    errors.push(syn::Error::new_spanned(e, "`burst` must be below 2^61"));
                }
                Ok(n) => burst = Some((key, n)),
                Err(e) => errors.push(e),
            },
            ("limiter", Value::Expr(e)) => limiter = Some((key, e)),
            ("crate", Value::Path(p)) => krate = Some(p),
            (_, Value::Unknown) => errors.push(syn::Error::new(
                key.span(),
                format!(
                    "unknown argument `{name}`; expected `requests_per_second = N`, \
                     `burst = M`, `limiter = NAME` or `crate = path`{}",
                    hint_for_unknown(&name)
                ),
            )),
            _ => unreachable!("parse_pair picks the value kind from the key"),
        }
    }

    let source = match (per_second, limiter) {
        (Some(_), Some((key, _))) => {
            errors.push(syn::Error::new(
                key.span(),
                "`requests_per_second` and `limiter` cannot be used together: the function \
                 either gets a limiter of its own or shares `limiter`",
            ));
            None
        }
        (Some((_, n)), None) => {
            let b = burst.as_ref().map_or(n, |(_, b)| *b);
            if burst.is_none() && n >= BURST_LIMIT {
                errors.push(syn::Error::new(
                    Span::call_site(),
                    "the default burst (`requests_per_second`) must be below 2^61; \
                     set a smaller `burst`",
                ));
            }
            Some(Source::Own { per_second: n, burst: b })
        }
        (None, Some((_, e))) => {
            if let Some((key, _)) = &burst {
                errors.push(syn::Error::new(
                    key.span(),
                    "`burst` only applies with `requests_per_second`: a shared `limiter` \
                     has its own burst",
                ));
            }
            Some(Source::Shared(Box::new(e)))
        }
        (None, None) => {
            // An invalid `requests_per_second` or unknown key has its own error already.
            if errors.is_empty() {
                errors.push(syn::Error::new(
                    Span::call_site(),
                    "`#[limit_rate]` needs `requests_per_second = N` for a limiter of its own, or \
                 `limiter = NAME` to share a limiter",
                ));
            }
            None
        }
    };
    let mut errors = errors.into_iter();
    match (errors.next(), source) {
        (Some(mut first), _) => {
            errors.for_each(|e| first.combine(e));
            Err(first)
        }
        (None, Some(source)) => Ok(Args { source, krate }),
        (None, None) => unreachable!("a missing source always records an error"),
    }
}

enum Value {
    Expr(Expr),
    Path(Path),
    Unknown,
}

/// `key = value`, parsing the value as the key needs (an unknown key swallows an expression).
fn parse_pair(input: ParseStream<'_>) -> syn::Result<(Ident, Value)> {
    // `crate` is a keyword, so accept any identifier.
    let key = Ident::parse_any(input)?;
    if !input.peek(Token![=]) {
        let msg = match key.to_string().as_str() {
            known @ ("requests_per_second" | "burst" | "limiter" | "crate") => {
                format!("expected `{known} = ...`")
            }
            _ => format!(
                "arguments are written `key = value`; to share a limiter named `{key}`, \
                 write `limiter = {key}`"
            ),
        };
        return Err(syn::Error::new(key.span(), msg));
    }
    input.parse::<Token![=]>()?;
    let value = match key.to_string().as_str() {
        "crate" => Value::Path(input.call(Path::parse_mod_style)?),
        "requests_per_second" | "burst" | "limiter" => Value::Expr(input.parse()?),
        _ => {
            input.parse::<Expr>()?;
            Value::Unknown
        }
    };
    Ok((key, value))
}

fn hint_for_unknown(name: &str) -> &'static str {
    match name {
        "rps" | "rate" | "per_second" | "requests_per_sec" => {
            " (did you mean `requests_per_second`?)"
        }
        "requests_per_minute" | "requests_per_hour" | "per_minute" | "period" => {
            "; for other periods, declare a limiter with `Rate::per_minute(..)` or \
             `Rate::new(count, period)` and pass `limiter = NAME`"
        }
        "capacity" | "max_burst" => " (did you mean `burst`?)",
        "shared" | "limiter_name" => " (did you mean `limiter`?)",
        _ => "",
    }
}

/// An integer literal ≥ 1, with errors that say what to write instead.
fn positive_integer(name: &str, e: &Expr) -> syn::Result<u64> {
    let err = |msg: String| Err(syn::Error::new_spanned(e, msg));
    match e {
        Expr::Lit(ExprLit { lit: Lit::Int(i), .. }) => match i.base10_parse::<u64>() {
            Ok(0) => err(format!("`{name}` must be at least 1")),
            Ok(n) => Ok(n),
            Err(_) => err(format!("`{name}` is too large: it must fit in a `u64`")),
        },
        Expr::Lit(ExprLit { lit: Lit::Float(_), .. }) => err(format!(
            "`{name}` must be a whole number; for a fractional rate such as 0.5 per second, \
             declare a limiter with `Rate::new(1, Duration::from_secs(2))` and pass \
             `limiter = NAME`"
        )),
        Expr::Lit(ExprLit { lit: Lit::Str(s), .. }) => err(format!(
            "`{name}` must be an integer, not a string: write `{name} = {}`",
            s.value()
        )),
        Expr::Unary(ExprUnary { op: UnOp::Neg(_), .. }) => {
            err(format!("`{name}` must be at least 1"))
        }
        _ => err(format!(
            "`{name}` must be an integer literal such as `{name} = 10`; for a rate computed \
             from constants, declare a `static` limiter and pass `limiter = NAME`"
        )),
    }
}

fn generate(flavor: &Flavor, args: &Args, mut func: ItemFn) -> TokenStream2 {
    let krate = match &args.krate {
        Some(path) => path.to_token_stream(),
        None => {
            let name = Ident::new(flavor.krate, Span::call_site());
            quote!(::#name)
        }
    };
    let wait = if flavor.blocking { quote!() } else { quote!(.await) };
    let acquire = match &args.source {
        Source::Own { per_second, burst } => {
            let rate = quote!(#krate::Rate::new(#per_second, ::core::time::Duration::from_secs(1)));
            // In a block of its own, so the name cannot clash with anything in the body.
            quote! {
                {
                    static __TOLLGATE_LIMITER: #krate::__limit_rate::Limiter =
                        #krate::__limit_rate::new(#rate, #burst);
                    __TOLLGATE_LIMITER.acquire() #wait;
                }
            }
        }
        Source::Shared(expr) => {
            let receiver = if needs_parens(expr) { quote!((#expr)) } else { quote!(#expr) };
            // Spanned at the user's expression, so a limiter of the wrong kind is reported there.
            let span = expr.span();
            let wait = if flavor.blocking { quote!() } else { quote_spanned!(span=> .await) };
            // `deny(unused_must_use)`: an async limiter handed to the blocking flavour would
            // otherwise build a future and drop it, limiting nothing.
            quote_spanned! {span=>
                #[deny(unused_must_use)]
                {
                    #receiver.acquire() #wait;
                }
            }
        }
    };
    let stmt: syn::Stmt = syn::parse2(acquire).expect("generated statement parses");
    func.block.stmts.insert(0, stmt);
    // Inner attributes (`#![allow(..)]`) must stay inside the body.
    let (inner, outer): (Vec<_>, Vec<_>) =
        func.attrs.iter().cloned().partition(|a| matches!(a.style, AttrStyle::Inner(_)));
    let ItemFn { vis, sig, block, .. } = &func;
    let stmts = &block.stmts;
    quote! {
        #(#outer)*
        #vis #sig {
            #(#inner)*
            #(#stmts)*
        }
    }
}

/// Whether `expr.acquire()` would bind to only part of `expr`.
fn needs_parens(expr: &Expr) -> bool {
    !matches!(
        expr,
        Expr::Path(_)
            | Expr::Field(_)
            | Expr::Call(_)
            | Expr::MethodCall(_)
            | Expr::Index(_)
            | Expr::Paren(_)
            | Expr::Macro(_)
    )
}
