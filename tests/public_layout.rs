//! The public layout the README's "Where things are" promises: the types a user starts from at
//! the root, what they hand out in the module named after them, and the same paths through an
//! adapter's glob re-export. The check is the build: moving or dropping a name breaks it.
#![cfg(not(tollgate_loom))]

use core::future::Ready;
use core::marker::PhantomData as P;

use futures_util::stream::Empty;
use tollgate::{ManualClock as C, Semaphore};

/// Compiles only if both arguments name the same type.
fn same<T: ?Sized>(_: P<T>, _: P<T>) {}

/// Compiles only if `T` is a type at that path.
fn named<T: ?Sized>() {}

#[test]
fn each_root_name_is_the_type_of_its_module() {
    same(P::<tollgate::AsyncRateLimiter<C>>, P::<tollgate::limiter::AsyncRateLimiter<C>>);
    same(P::<tollgate::TokenBucket>, P::<tollgate::bucket::TokenBucket>);
    same(P::<tollgate::SlidingWindow<60>>, P::<tollgate::window::SlidingWindow<60>>);
    same(P::<tollgate::Semaphore>, P::<tollgate::semaphore::Semaphore>);
    same(P::<tollgate::Instant>, P::<tollgate::time::Instant>);
    same(P::<tollgate::ManualClock>, P::<tollgate::time::ManualClock>);
    same(P::<tollgate::ModelRateLimiter<C>>, P::<tollgate::model::ModelRateLimiter<C>>);
    same(P::<tollgate::RateLimitConfig>, P::<tollgate::model::RateLimitConfig>);
    same(P::<tollgate::ModelStats>, P::<tollgate::model::ModelStats>);
    same(P::<tollgate::Usage>, P::<tollgate::model::Usage>);
    // The traits, as bounds from the root and from their modules.
    fn root<K: tollgate::Clock, T: tollgate::Timer, S: tollgate::StreamRateLimitExt>() {}
    fn modules<
        K: tollgate::time::Clock,
        T: tollgate::time::Timer,
        S: tollgate::stream::StreamRateLimitExt,
    >() {
    }
    root::<C, C, Empty<()>>();
    modules::<C, C, Empty<()>>();
    // Root only: no module of their own.
    named::<(tollgate::Error, tollgate::InvalidConfig, tollgate::Rate, tollgate::Refusal)>();
}

#[test]
fn secondary_types_live_in_the_module_of_the_type_that_hands_them_out() {
    use tollgate::limiter::{AcquireTokens, AcquireTokensOwned, Call, Run};
    use tollgate::model::{ModelConfigError, ModelPermit, OwnedModelPermit};
    use tollgate::semaphore::{
        Acquire, AcquireFuture, AcquireMany, AcquireManyOwned, AcquireOwned, OwnedSemaphorePermit,
        Permit, SemaphorePermit, TryAcquireError,
    };
    use tollgate::stream::{RejectedItem, Throttle, ThrottleBy};

    named::<tollgate::bucket::Reservation>();
    named::<tollgate::window::SlotId>();
    named::<(tollgate::window::HeapWindow, tollgate::window::RingWindow<[u64; 4]>)>();
    same(P::<tollgate::SlidingWindow<4>>, P::<tollgate::window::RingWindow<[u64; 4]>>);
    named::<(tollgate::model::Limit, tollgate::model::Counts, tollgate::model::LimitKind)>();
    named::<(tollgate::model::LimitUsage, tollgate::model::Charge, tollgate::model::Wait)>();
    named::<(tollgate::model::RateState, tollgate::model::MemoryStore)>();
    named::<(tollgate::model::ParityReport, tollgate::model::ParityMismatch)>();
    fn store<S: tollgate::model::StateStore>() {}
    store::<tollgate::model::MemoryStore>();
    same(
        P::<ModelPermit<'static, C>>,
        P::<tollgate::model::ModelPermitOf<&'static tollgate::ModelRateLimiter<C>>>,
    );
    named::<AcquireTokens<'static, C>>();
    named::<AcquireTokensOwned<C>>();
    named::<Run<'static, C, Ready<()>>>();
    named::<Call<'static, C, fn(()) -> Ready<()>, (), Ready<()>>>();
    named::<ModelConfigError>();
    named::<ModelPermit<'static, C>>();
    named::<OwnedModelPermit<C>>();
    named::<(Acquire<'static>, AcquireMany<'static>, AcquireOwned, AcquireManyOwned)>();
    named::<(SemaphorePermit<'static>, OwnedSemaphorePermit, TryAcquireError)>();
    same(P::<Permit<&'static Semaphore>>, P::<SemaphorePermit<'static>>);
    same(P::<AcquireFuture<&'static Semaphore, false>>, P::<Acquire<'static>>);
    named::<Throttle<'static, Empty<()>, C>>();
    named::<ThrottleBy<'static, Empty<()>, C, fn(&()) -> u64>>();
    named::<RejectedItem<()>>();
    named::<tollgate::time::ManualSleep<'static>>();
    // Provider feedback: the parsers and what they hand out, all in `tollgate::provider`.
    named::<(tollgate::provider::HeaderReport, tollgate::provider::Observed)>();
    named::<(tollgate::provider::Ignored, tollgate::provider::IgnoreReason)>();
    named::<(tollgate::provider::Provider, tollgate::provider::Quota)>();
    named::<(tollgate::provider::Throttled, tollgate::provider::GoDuration)>();
    let _ = (
        tollgate::provider::parse_headers::<[(&str, &str); 0], &str, &str>,
        tollgate::provider::classify_429,
        tollgate::provider::parse_go_duration,
        tollgate::provider::parse_rfc3339,
        tollgate::provider::parse_http_date,
    );
}

#[test]
fn adapters_reach_the_same_modules_through_their_glob() {
    same(
        P::<tollgate_tokio::semaphore::SemaphorePermit<'static>>,
        P::<tollgate::semaphore::SemaphorePermit<'static>>,
    );
    same(P::<tollgate_tokio::bucket::Reservation>, P::<tollgate::bucket::Reservation>);
    same(P::<tollgate_tokio::model::ModelConfigError>, P::<tollgate::model::ModelConfigError>);
    same(P::<tollgate_tokio::provider::HeaderReport>, P::<tollgate::provider::HeaderReport>);
    // tollgate-std's `limiter` and `model` are the core's modules plus its blocking types.
    same(P::<tollgate_std::model::ModelConfigError>, P::<tollgate::model::ModelConfigError>);
    same(P::<tollgate_std::model::ModelRateLimiter>, P::<tollgate_std::ModelRateLimiter>);
    same(P::<tollgate_std::limiter::RateLimiter>, P::<tollgate_std::RateLimiter>);
    type Timer = tollgate_std::StdTimer;
    same(
        P::<tollgate_std::limiter::Run<'static, Timer, Ready<()>>>,
        P::<tollgate::limiter::Run<'static, Timer, Ready<()>>>,
    );
}
