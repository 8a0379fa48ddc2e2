//! The aliases every runtime adapter exports, written once: [`__adapter_aliases!`] declares
//! them over the adapter's timer, together with the `__limit_rate` module the `#[limit_rate]`
//! attribute builds a function's own limiter through; [`__assert_adapter_aliases!`] is the test
//! each adapter runs to prove it exports the full set.
//!
//! The set, in this order: `AsyncRateLimiter`, `AcquireTokens<'a>`, and with an allocator
//! `ModelRateLimiter`, `ModelPermit<'a>`, `OwnedModelPermit`, `AcquireTokensOwned`,
//! `KeyedRateLimiter<K>`, `KeyedAcquire<'a, K, Q>`, `KeyedAcquireOwned<K>`. A blocking
//! adapter (`flavor: blocking`, i.e. `tollgate-std`) declares its own `ModelRateLimiter` and
//! `ModelPermit<'a>` (the blocking limiter and its permit) and a blocking `RateLimiter`.

/// Declares the adapter aliases over `timer` in the invoking crate's root, and the
/// `__limit_rate` module. Not public API: used by the adapter crates only.
///
/// - `flavor: async`: all six aliases; a function's own limiter is the `AsyncRateLimiter`.
/// - `flavor: blocking`: `ModelRateLimiter` and `ModelPermit<'a>` are the adapter's own;
///   a function's own limiter is the adapter's `RateLimiter` (`const fn new(rate, burst)`).
/// - `alloc: [attrs]`: put on each alias that needs an allocator, e.g. a `cfg`.
/// - The doc attributes before `AsyncRateLimiter` are appended to its docs (an example).
///
/// The generated docs link only to items of the adapter (its timer, these aliases): a link in
/// a doc string written by a macro of another crate does not resolve to that crate's items or
/// to methods through an alias, and rustdoc does not report it. The alias pages link the core
/// type themselves.
#[doc(hidden)]
#[macro_export]
macro_rules! __adapter_aliases {
    (
        timer: $timer:ident,
        flavor: $flavor:ident,
        alloc: [$(#[$gate:meta])*],
        $(#[$doc:meta])*
        AsyncRateLimiter $(,)?
    ) => {
        #[doc = concat!(
            "`tollgate::AsyncRateLimiter` on the [`", stringify!($timer), "`]: ",
            "`AsyncRateLimiter::per_second(10)` needs no type parameter.",
        )]
        #[doc = ""]
        $(#[$doc])*
        pub type AsyncRateLimiter = $crate::AsyncRateLimiter<$timer>;

        #[doc = concat!(
            "`tollgate::limiter::AcquireTokens` on the [`", stringify!($timer), "`]: the future ",
            "of [`AsyncRateLimiter`]`::acquire_n` and its bounded forms.",
        )]
        pub type AcquireTokens<'a> = $crate::limiter::AcquireTokens<'a, $timer>;

        $crate::__adapter_aliases!(@model $flavor $timer [$(#[$gate])*]);

        $(#[$gate])*
        #[doc = concat!(
            "`tollgate::model::OwnedModelPermit` on the [`", stringify!($timer), "`]: an admitted ",
            "request of `tollgate::ModelRateLimiter::acquire_owned`, for spawned tasks.",
        )]
        pub type OwnedModelPermit = $crate::model::OwnedModelPermit<$timer>;

        $(#[$gate])*
        #[doc = concat!(
            "`tollgate::limiter::AcquireTokensOwned` on the [`", stringify!($timer), "`]: the ",
            "`'static` future of [`AsyncRateLimiter`]`::acquire_n_owned` and its bounded forms.",
        )]
        pub type AcquireTokensOwned = $crate::limiter::AcquireTokensOwned<$timer>;

        $(#[$gate])*
        #[doc = concat!(
            "`tollgate::KeyedRateLimiter` on the [`", stringify!($timer), "`]: one bucket per ",
            "key (a client address, an API key), with exact eviction of keys that refilled.",
        )]
        pub type KeyedRateLimiter<K, S = $crate::keyed::DefaultHashBuilder> =
            $crate::KeyedRateLimiter<K, $timer, S>;

        $(#[$gate])*
        #[doc = concat!(
            "`tollgate::keyed::KeyedAcquire` on the [`", stringify!($timer), "`]: the future ",
            "of [`KeyedRateLimiter`]`::acquire_n` and its bounded forms.",
        )]
        pub type KeyedAcquire<'a, K, Q, S = $crate::keyed::DefaultHashBuilder> =
            $crate::keyed::KeyedAcquire<'a, K, Q, $timer, S>;

        $(#[$gate])*
        #[doc = concat!(
            "`tollgate::keyed::KeyedAcquireOwned` on the [`", stringify!($timer), "`]: the ",
            "`'static` future of [`KeyedRateLimiter`]`::acquire_n_owned` and its bounded forms.",
        )]
        pub type KeyedAcquireOwned<K, S = $crate::keyed::DefaultHashBuilder> =
            $crate::keyed::KeyedAcquireOwned<K, $timer, S>;

        $crate::__adapter_aliases!(@limit_rate $flavor $timer);
    };
    (@model async $timer:ident [$(#[$gate:meta])*]) => {
        $(#[$gate])*
        #[doc = concat!(
            "`tollgate::ModelRateLimiter` on the [`", stringify!($timer), "`]: per-model ",
            "RPM, TPM and parallel limits.",
        )]
        pub type ModelRateLimiter = $crate::ModelRateLimiter<$timer>;

        $(#[$gate])*
        #[doc = concat!(
            "`tollgate::model::ModelPermit` on the [`", stringify!($timer), "`]: an admitted ",
            "request of [`ModelRateLimiter`].",
        )]
        pub type ModelPermit<'a> = $crate::model::ModelPermit<'a, $timer>;
    };
    (@model blocking $timer:ident [$(#[$gate:meta])*]) => {};
    (@limit_rate async $timer:ident) => {
        $crate::__adapter_aliases!(
            @limit_rate_module super::AsyncRateLimiter,
            |rate, burst| super::AsyncRateLimiter::with_timer(rate, burst, super::$timer::new())
        );
    };
    (@limit_rate blocking $timer:ident) => {
        $crate::__adapter_aliases!(
            @limit_rate_module super::RateLimiter,
            |rate, burst| super::RateLimiter::new(rate, burst)
        );
    };
    (@limit_rate_module $limiter:ty, |$rate:ident, $burst:ident| $new:expr) => {
        /// What `#[limit_rate]` needs from this adapter. Not public API.
        #[doc(hidden)]
        pub mod __limit_rate {
            /// The type of a function's own limiter (`requests_per_second = N`).
            pub type Limiter = $limiter;

            /// A function's own limiter, built in const context for its `static`.
            pub const fn new($rate: $crate::Rate, $burst: u64) -> Limiter {
                $new
            }
        }
    };
}

/// Defines `#[test]`s proving that `adapter` exports every alias [`__adapter_aliases!`]
/// declares, each equal to the core type on `timer`, and the `__limit_rate` module. Not public
/// API: each adapter's `tests/aliases.rs` invokes it.
#[doc(hidden)]
#[macro_export]
macro_rules! __assert_adapter_aliases {
    (
        adapter: $adapter:ident,
        timer: $timer:ident,
        flavor: $flavor:ident,
        alloc: [$(#[$gate:meta])*] $(,)?
    ) => {
        /// Compiles only if both arguments name the same type.
        fn same<T: ?Sized>(_: ::core::marker::PhantomData<T>, _: ::core::marker::PhantomData<T>) {}

        #[test]
        fn async_aliases_are_the_core_types_on_the_adapter_timer() {
            use ::core::marker::PhantomData as P;
            same(P::<$adapter::AsyncRateLimiter>, P::<$crate::AsyncRateLimiter<$adapter::$timer>>);
            same(
                P::<$adapter::AcquireTokens<'static>>,
                P::<$crate::limiter::AcquireTokens<'static, $adapter::$timer>>,
            );
            $crate::__assert_adapter_aliases!(@limit_rate $flavor $adapter);
        }

        $(#[$gate])*
        #[test]
        fn alloc_aliases_are_the_core_types_on_the_adapter_timer() {
            use ::core::marker::PhantomData as P;
            $crate::__assert_adapter_aliases!(@model $flavor $adapter $timer);
            same(
                P::<$adapter::ModelPermit<'static>>,
                P::<$crate::model::ModelPermit<'static, $adapter::$timer>>,
            );
            same(
                P::<$adapter::OwnedModelPermit>,
                P::<$crate::model::OwnedModelPermit<$adapter::$timer>>,
            );
            same(
                P::<$adapter::AcquireTokensOwned>,
                P::<$crate::limiter::AcquireTokensOwned<$adapter::$timer>>,
            );
            same(
                P::<$adapter::KeyedRateLimiter<u64>>,
                P::<$crate::KeyedRateLimiter<u64, $adapter::$timer>>,
            );
            same(
                P::<$adapter::KeyedAcquire<'static, u64, u64>>,
                P::<
                    $crate::keyed::KeyedAcquire<
                        'static,
                        u64,
                        u64,
                        $adapter::$timer,
                        $crate::keyed::DefaultHashBuilder,
                    >,
                >,
            );
            same(
                P::<$adapter::KeyedAcquireOwned<u64>>,
                P::<
                    $crate::keyed::KeyedAcquireOwned<
                        u64,
                        $adapter::$timer,
                        $crate::keyed::DefaultHashBuilder,
                    >,
                >,
            );
            // Built through the alias on its timer's `Default` (not asked: that reads the
            // adapter's clock, which some adapters' test binaries have no driver for).
            let keyed = $adapter::KeyedRateLimiter::<u64>::new($crate::Rate::per_second(5), 2);
            assert_eq!((keyed.rate(), keyed.burst()), ($crate::Rate::per_second(5), 2));
        }
    };
    (@model async $adapter:ident $timer:ident) => {
        same(P::<$adapter::ModelRateLimiter>, P::<$crate::ModelRateLimiter<$adapter::$timer>>);
    };
    (@model blocking $adapter:ident $timer:ident) => {
        // The blocking limiter wraps the core one on the adapter's timer.
        let _: fn(&$adapter::ModelRateLimiter) -> &$crate::ModelRateLimiter<$adapter::$timer> =
            $adapter::ModelRateLimiter::as_async;
    };
    (@limit_rate async $adapter:ident) => {
        same(P::<$adapter::__limit_rate::Limiter>, P::<$adapter::AsyncRateLimiter>);
        $crate::__assert_adapter_aliases!(@limit_rate_new $adapter);
    };
    (@limit_rate blocking $adapter:ident) => {
        same(P::<$adapter::__limit_rate::Limiter>, P::<$adapter::RateLimiter>);
        // The blocking limiter wraps the async alias.
        let _: fn(&$adapter::RateLimiter) -> &$adapter::AsyncRateLimiter =
            $adapter::RateLimiter::as_async;
        $crate::__assert_adapter_aliases!(@limit_rate_new $adapter);
    };
    (@limit_rate_new $adapter:ident) => {
        // A function's own limiter is built in const context.
        static LIMITER: $adapter::__limit_rate::Limiter = $adapter::__limit_rate::new(
            $crate::Rate::new(5, ::core::time::Duration::from_secs(1)),
            2,
        );
        assert_eq!((LIMITER.rate(), LIMITER.burst()), ($crate::Rate::per_second(5), 2));
    };
}
