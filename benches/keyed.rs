//! Keyed decision cost and memory per key, tollgate's `KeyedRateLimiter` beside governor's
//! keyed limiter (`RateLimiter::dashmap_with_clock`: the dashmap state store and std's
//! SipHash `RandomState` of `DefaultKeyedRateLimiter`), in the same run.
//!
//! Each scenario is one criterion group, so the two libraries sit side by side:
//!
//! - `hot_1t` / `hot_rejected_1t`: one thread on one key, admitted / refused;
//! - `million_1t`: one thread cycling over 10^6 distinct keys, all held (a cache miss each);
//! - `hot_2t`: two threads on the same key; `distinct_2t`: two threads, each on its own key.
//!   The time is per decision *per thread* (wall time of `iters` decisions on each thread).
//!
//! A third entry, `governor+foldhash`, is governor with tollgate's default hasher in place of
//! SipHash, to show how much of a difference is the hash function rather than the map.
//!
//! Both sides read a fixed instant (1 s after their epoch) from a clock that is one atomic
//! load: tollgate a `ManualClock`, governor a `FakeRelativeClock`. The admitted scenarios use
//! a burst of `u32::MAX`, so every timed decision is admitted.
//!
//! Before the criterion groups, a counting global allocator measures the heap bytes per live
//! key (10^5 keys of `u64` and of `IpAddr`), and what is left after the keys refilled and both
//! limiters were asked to forget them and shrink.
//!
//! The two-thread groups swing by 2× between runs on a shared machine (the other load decides
//! how often the two threads really run at once), so the bench ends with a paired run of
//! them: rounds of 200 000 decisions per thread through each limiter in rotating order, and
//! the medians over rounds of each figure and of tollgate's time over each peer's in the
//! same round.
//!
//! Run: `cargo bench --bench keyed -- --warm-up-time 1 --measurement-time 3` (a criterion
//! filter such as `keyed_hot_2t` limits the groups; the paired run always runs).
#![allow(missing_docs)] // criterion's macros generate undocumented items

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::hash::Hash;
use core::hint::black_box;
use core::net::{IpAddr, Ipv6Addr};
use core::num::NonZeroU32;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use core::time::Duration;
use std::alloc::System;

#[path = "support/timed.rs"]
mod timed;
use timed::timed;

use criterion::{Criterion, criterion_group};
use governor::clock::FakeRelativeClock;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use tollgate::keyed::KeyedRateLimiter;
use tollgate::{Clock, ManualClock, Rate};

/// Counts the bytes currently allocated, for the memory report.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_bytes() -> usize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

type Governor<K> = RateLimiter<
    K,
    DashMapStateStore<K>,
    FakeRelativeClock,
    governor::middleware::NoOpMiddleware<governor::nanos::Nanos>,
>;
/// Governor's keyed limiter with tollgate's default hasher instead of SipHash: how much of the
/// difference is the hash function.
type GovernorFold<K> = RateLimiter<
    K,
    DashMapStateStore<K, foldhash::fast::RandomState>,
    FakeRelativeClock,
    governor::middleware::NoOpMiddleware<governor::nanos::Nanos>,
>;
type Tollgate<K> = KeyedRateLimiter<K, &'static ManualClock>;

/// The clock of the timed tollgate limiters, stopped at 1 s.
static CLOCK: ManualClock = ManualClock::starting_at(tollgate::Instant::from_secs(1));

fn tollgate<K: Hash + Eq>(per_second: u32, burst: u32) -> Tollgate<K> {
    tollgate_on(per_second, burst, &CLOCK)
}

fn tollgate_on<K: Hash + Eq>(
    per_second: u32,
    burst: u32,
    clock: &'static ManualClock,
) -> Tollgate<K> {
    KeyedRateLimiter::with_timer(Rate::per_second(per_second), u64::from(burst), clock)
}

fn governor<K: Hash + Eq + Clone>(per_second: u32, burst: u32) -> (Governor<K>, FakeRelativeClock) {
    let quota = Quota::per_second(NonZeroU32::new(per_second).unwrap())
        .allow_burst(NonZeroU32::new(burst).unwrap());
    let clock = FakeRelativeClock::default();
    clock.advance(Duration::from_secs(1));
    (RateLimiter::dashmap_with_clock(quota, clock.clone()), clock)
}

fn governor_fold<K: Hash + Eq + Clone>(per_second: u32, burst: u32) -> GovernorFold<K> {
    let quota = Quota::per_second(NonZeroU32::new(per_second).unwrap())
        .allow_burst(NonZeroU32::new(burst).unwrap());
    let clock = FakeRelativeClock::default();
    clock.advance(Duration::from_secs(1));
    RateLimiter::dashmap_with_clock_and_hasher(quota, clock, Default::default())
}

/// Admitted at the fixed instant, whatever the number of decisions.
const FAST: u32 = 1_000_000;
const HUGE_BURST: u32 = u32::MAX;
const MILLION: u64 = 1_000_000;

thread_local! {
    /// This thread's next index into its key cycle.
    static NEXT: Cell<u64> = const { Cell::new(0) };
    /// This thread's own key, for `distinct_2t`.
    static OWN_KEY: u64 = THREADS_SEEN.fetch_add(1, Ordering::Relaxed);
}
static THREADS_SEEN: AtomicU64 = AtomicU64::new(1_000);

/// The next key of a cycle over `0..span`.
fn cycle(span: u64) -> u64 {
    NEXT.with(|n| {
        let i = n.get();
        n.set(if i + 1 == span { 0 } else { i + 1 });
        i
    })
}

fn own_key() -> u64 {
    OWN_KEY.with(|k| *k)
}

fn bench_pair<K>(
    c: &mut Criterion,
    group: &str,
    threads: usize,
    (tollgate, governor, fold): (&Tollgate<K>, &Governor<K>, &GovernorFold<K>),
    key: impl Fn() -> K + Sync + Copy,
) where
    K: Hash + Eq + Clone + Send + Sync,
{
    let mut g = c.benchmark_group(group);
    g.bench_function("tollgate", |b| {
        b.iter_custom(|iters| {
            timed(tollgate, threads, iters, |l| {
                let _ = black_box(l.try_acquire(&key()));
            })
        })
    });
    g.bench_function("governor", |b| {
        b.iter_custom(|iters| {
            timed(governor, threads, iters, |l| {
                let _ = black_box(l.check_key(&key()));
            })
        })
    });
    g.bench_function("governor+foldhash", |b| {
        b.iter_custom(|iters| {
            timed(fold, threads, iters, |l| {
                let _ = black_box(l.check_key(&key()));
            })
        })
    });
    g.finish();
}

fn keyed(c: &mut Criterion) {
    {
        let t = tollgate::<u64>(FAST, HUGE_BURST);
        let (g, _clock) = governor::<u64>(FAST, HUGE_BURST);
        let f = governor_fold::<u64>(FAST, HUGE_BURST);
        bench_pair(c, "keyed_hot_1t", 1, (&t, &g, &f), || 7);
        bench_pair(c, "keyed_hot_2t", 2, (&t, &g, &f), || 7);
        bench_pair(c, "keyed_distinct_2t", 2, (&t, &g, &f), own_key);
    }
    {
        let t = tollgate::<u64>(1, 1);
        let (g, _clock) = governor::<u64>(1, 1);
        let f = governor_fold::<u64>(1, 1);
        let _ = (t.try_acquire(&7), g.check_key(&7), f.check_key(&7));
        bench_pair(c, "keyed_hot_rejected_1t", 1, (&t, &g, &f), || 7);
    }
    {
        let t = tollgate::<u64>(FAST, HUGE_BURST);
        let (g, _clock) = governor::<u64>(FAST, HUGE_BURST);
        let f = governor_fold::<u64>(FAST, HUGE_BURST);
        for key in 0..MILLION {
            let _ = (t.try_acquire(&key), g.check_key(&key), f.check_key(&key));
        }
        assert_eq!(
            (t.len(), g.len(), f.len()),
            (MILLION as usize, MILLION as usize, MILLION as usize)
        );
        bench_pair(c, "keyed_million_1t", 1, (&t, &g, &f), || cycle(MILLION));
    }
}

/// Heap bytes per live key for `n` keys made by `key`, on both sides, and what is left after
/// the keys refilled and each limiter forgot them (`retain_recent`) and shrank.
fn memory_per_key<K: Hash + Eq + Clone>(what: &str, n: u64, key: impl Fn(u64) -> K) {
    let clock_t: &'static ManualClock =
        Box::leak(Box::new(ManualClock::starting_at(tollgate::Instant::from_secs(1))));
    let base = live_bytes();
    let t = tollgate_on::<K>(1, 1, clock_t);
    let empty_t = live_bytes() - base;
    for i in 0..n {
        t.try_acquire(&key(i)).unwrap();
    }
    let full_t = live_bytes() - base;
    let t_len = t.len();
    // Every key has refilled 1 s later.
    clock_t.advance(Duration::from_secs(2));
    t.retain_recent();
    t.shrink_to_fit();
    let after_t = live_bytes() - base;
    assert_eq!(t.len(), 0);
    drop(t);

    let base = live_bytes();
    let (g, clock) = governor::<K>(1, 1);
    let empty_g = live_bytes() - base;
    for i in 0..n {
        g.check_key(&key(i)).unwrap();
    }
    let full_g = live_bytes() - base;
    let g_len = g.len();
    clock.advance(Duration::from_secs(2));
    g.retain_recent();
    g.shrink_to_fit();
    let after_g = live_bytes() - base;
    drop(g);

    let per_t = (full_t - empty_t) as f64 / t_len as f64;
    let per_g = (full_g - empty_g) as f64 / g_len as f64;
    println!(
        "memory/{what}: {n} live keys: tollgate {per_t:.1} B/key, governor {per_g:.1} B/key \
         ({:.2}×); empty {empty_t} B vs {empty_g} B; after the keys refilled, retain_recent and \
         shrink_to_fit: tollgate {after_t} B, governor {after_g} B",
        per_t / per_g
    );
}

fn memory(_: &mut Criterion) {
    memory_per_key("u64", 100_000, |i| i);
    memory_per_key("IpAddr", 100_000, |i| {
        IpAddr::V6(Ipv6Addr::from(u128::from(i) | 0x2001_0db8 << 96))
    });
    memory_per_key("u64 ×10^6", MILLION, |i| i);
}

/// The paired run of the two-thread scenarios: medians over rounds, each round timing every
/// limiter back to back in rotating order.
fn paired() {
    const ROUNDS: usize = 31;
    const PER_ROUND: u64 = 200_000;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let t = tollgate::<u64>(FAST, HUGE_BURST);
    let (g, _clock) = governor::<u64>(FAST, HUGE_BURST);
    let f = governor_fold::<u64>(FAST, HUGE_BURST);
    let hot: fn() -> u64 = || 7;
    for (name, key) in [("hot_2t", hot), ("distinct_2t", own_key)] {
        let mut ns = [Vec::new(), Vec::new(), Vec::new()];
        for round in 0..ROUNDS {
            for k in 0..3 {
                let i = (round + k) % 3;
                let took = match i {
                    0 => timed(&t, 2, PER_ROUND, |l| {
                        let _ = black_box(l.try_acquire(&key()));
                    }),
                    1 => timed(&g, 2, PER_ROUND, |l| {
                        let _ = black_box(l.check_key(&key()));
                    }),
                    _ => timed(&f, 2, PER_ROUND, |l| {
                        let _ = black_box(l.check_key(&key()));
                    }),
                };
                ns[i].push(took.as_nanos() as f64 / PER_ROUND as f64);
            }
        }
        let ratio = |peer: usize| median(ns[0].iter().zip(&ns[peer]).map(|(t, p)| t / p).collect());
        let (to_g, to_f) = (ratio(1), ratio(2));
        let [nt, ng, nf] = ns.map(median);
        println!(
            "paired keyed_{name}: tollgate {nt:.1} ns, governor {ng:.1} ns, governor+foldhash \
             {nf:.1} ns per decision per thread; tollgate/governor {to_g:.3}x, \
             tollgate/governor+foldhash {to_f:.3}x (medians of {ROUNDS} rounds)"
        );
    }
}

criterion_group!(benches, memory, keyed);

fn main() {
    // The clock is read through `Clock`; make sure it is the stopped one.
    assert_eq!(CLOCK.now(), tollgate::Instant::from_secs(1));
    benches();
    Criterion::default().configure_from_args().final_summary();
    paired();
}
