//! An interrupt handler and thread code on one limiter, on a Cortex-M4F under QEMU.
//!
//! SysTick fires at a high rate and, from the interrupt, tries a static `TokenBucket`, a static
//! `AsyncRateLimiter` and a static `Semaphore`, while the main loop hammers the same three.
//! Cortex-M has no 64-bit atomics, so the bucket's state goes through a critical section; a
//! spin lock here would hang the first time the interrupt lands while thread code holds it
//! (the CI step runs this under `timeout`, so a hang fails it).
//!
//! The clock is a tick counter that only the main loop advances, so the admitted counts are
//! exact: the main loop takes every token as soon as it exists (the interrupt may take it
//! first), so no token is ever lost to a full bucket, and after the last tick the main loop
//! drains what is left. Over `T` ticks a bucket of burst `B` that refills one token per `P`
//! ticks then has admitted exactly `B + floor(T / P)`, however the tokens were split between
//! the two contexts.
//!
//! Exit status (semihosting): 0 if every count is exact, 1 otherwise or on a panic or fault.

#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;

use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{ExceptionFrame, entry, exception};
use cortex_m_semihosting::{debug, hprintln};
use tollgate::{AsyncRateLimiter, Clock, Instant, Rate, Semaphore, TokenBucket};

/// One tick of the firmware's clock.
const TICK_NS: u64 = 1_000;
/// Ticks the main loop runs for.
const TICKS: u32 = 150_000;
/// SysTick reload values (core clock cycles between interrupts): the handler picks the next one
/// pseudo-randomly in `RELOAD_MIN..RELOAD_MIN + RELOAD_SPAN`, so that the interrupt lands at
/// every point of the main loop rather than locking onto one phase of it.
const RELOAD_MIN: u32 = 20;
const RELOAD_SPAN: u32 = 64;

/// The bucket: one token every 3 ticks, burst 4.
const BUCKET_PERIOD_TICKS: u64 = 3;
const BUCKET_BURST: u64 = 4;
static BUCKET: TokenBucket = TokenBucket::new(
    Rate::new(1, Duration::from_nanos(BUCKET_PERIOD_TICKS * TICK_NS)),
    BUCKET_BURST,
);

/// The limiter (its own bucket, read through its clock): one token every 2 ticks, burst 3.
const LIMITER_PERIOD_TICKS: u64 = 2;
const LIMITER_BURST: u64 = 3;
static LIMITER: AsyncRateLimiter<TickClock> = AsyncRateLimiter::with_timer(
    Rate::new(1, Duration::from_nanos(LIMITER_PERIOD_TICKS * TICK_NS)),
    LIMITER_BURST,
    TickClock,
);

/// One permit: the main loop holds it around its bucket attempt, the interrupt tries it.
static SEMAPHORE: Semaphore = Semaphore::new(1);

/// The clock: advanced only by the main loop.
static NOW: AtomicU32 = AtomicU32::new(0);

/// Reads [`NOW`] as an [`Instant`].
#[derive(Debug, Clone, Copy, Default)]
struct TickClock;

impl Clock for TickClock {
    fn now(&self) -> Instant {
        Instant::from_nanos(u64::from(NOW.load(Ordering::Acquire)) * TICK_NS)
    }
}

/// Counters written only by the interrupt handler.
static IRQS: AtomicU32 = AtomicU32::new(0);
static IRQ_BUCKET_OK: AtomicU32 = AtomicU32::new(0);
static IRQ_LIMITER_OK: AtomicU32 = AtomicU32::new(0);
static IRQ_SEM_OK: AtomicU32 = AtomicU32::new(0);
static IRQ_SEM_BUSY: AtomicU32 = AtomicU32::new(0);

fn bump(counter: &AtomicU32) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// The interrupt's pseudo-random generator state (a 32-bit LCG, fixed seed).
static SEED: AtomicU32 = AtomicU32::new(0x2545_f491);

#[exception]
fn SysTick() {
    bump(&IRQS);
    let seed = SEED.load(Ordering::Relaxed).wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
    SEED.store(seed, Ordering::Relaxed);
    // SAFETY: only this handler writes the reload register once SysTick runs; a new value takes
    // effect at the next wrap.
    unsafe { (*SYST::PTR).rvr.write(RELOAD_MIN + (seed >> 16) % RELOAD_SPAN) };
    let now = TickClock.now();
    if BUCKET.try_acquire_at(1, now).is_ok() {
        bump(&IRQ_BUCKET_OK);
    }
    if LIMITER.try_acquire().is_ok() {
        bump(&IRQ_LIMITER_OK);
    }
    match SEMAPHORE.try_acquire() {
        Ok(permit) => {
            bump(&IRQ_SEM_OK);
            drop(permit);
        }
        Err(_) => bump(&IRQ_SEM_BUSY),
    }
}

#[entry]
fn main() -> ! {
    let mut cp = cortex_m::Peripherals::take().unwrap();

    let mut bucket_ok: u64 = 0;
    let mut limiter_ok: u64 = 0;
    let mut attempts: u64 = 0;
    let mut sem_ok: u64 = 0;
    let mut sem_busy: u64 = 0;

    // Start empty, so that from here on a token never waits for long enough to overflow.
    while BUCKET.try_acquire_at(1, TickClock.now()).is_ok() {
        bucket_ok += 1;
    }
    while LIMITER.try_acquire().is_ok() {
        limiter_ok += 1;
    }

    cp.SYST.set_clock_source(SystClkSource::Core);
    cp.SYST.set_reload(RELOAD_MIN);
    cp.SYST.clear_current();
    cp.SYST.enable_interrupt();
    cp.SYST.enable_counter();

    for tick in 1..=TICKS {
        NOW.store(tick, Ordering::Release);
        let now = TickClock.now();
        attempts += 1;
        // The interrupt only ever holds its permit inside the handler, so this never fails;
        // the interrupt, landing while the thread holds it, is refused.
        let permit = SEMAPHORE.try_acquire();
        if permit.is_ok() {
            sem_ok += 1;
        } else {
            sem_busy += 1;
        }
        if BUCKET.try_acquire_at(1, now).is_ok() {
            bucket_ok += 1;
        }
        drop(permit);
        if LIMITER.try_acquire().is_ok() {
            limiter_ok += 1;
        }
    }

    cp.SYST.disable_interrupt();
    cp.SYST.disable_counter();
    // Whatever the last ticks left.
    let end = TickClock.now();
    while BUCKET.try_acquire_at(1, end).is_ok() {
        bucket_ok += 1;
    }
    while LIMITER.try_acquire().is_ok() {
        limiter_ok += 1;
    }

    let irqs = IRQS.load(Ordering::Relaxed);
    let irq_bucket = u64::from(IRQ_BUCKET_OK.load(Ordering::Relaxed));
    let irq_limiter = u64::from(IRQ_LIMITER_OK.load(Ordering::Relaxed));
    let irq_sem_ok = IRQ_SEM_OK.load(Ordering::Relaxed);
    let irq_sem_busy = IRQ_SEM_BUSY.load(Ordering::Relaxed);
    let bucket_total = bucket_ok + irq_bucket;
    let limiter_total = limiter_ok + irq_limiter;
    let bucket_expected = BUCKET_BURST + u64::from(TICKS) / BUCKET_PERIOD_TICKS;
    let limiter_expected = LIMITER_BURST + u64::from(TICKS) / LIMITER_PERIOD_TICKS;

    hprintln!(
        "tollgate firmware (thumbv7em-none-eabihf, QEMU mps2-an386, Cortex-M4F): {} ticks, {} interrupts",
        TICKS,
        irqs
    );
    hprintln!(
        "bucket:    admitted {} (thread {}, interrupt {}), expected {} = {} + {}/{}",
        bucket_total,
        bucket_ok,
        irq_bucket,
        bucket_expected,
        BUCKET_BURST,
        TICKS,
        BUCKET_PERIOD_TICKS
    );
    hprintln!(
        "limiter:   admitted {} (thread {}, interrupt {}), expected {} = {} + {}/{}",
        limiter_total,
        limiter_ok,
        irq_limiter,
        limiter_expected,
        LIMITER_BURST,
        TICKS,
        LIMITER_PERIOD_TICKS
    );
    hprintln!(
        "semaphore: thread {} of {} acquired; interrupt {} acquired, {} refused; {} permit(s) left",
        sem_ok,
        attempts,
        irq_sem_ok,
        irq_sem_busy,
        SEMAPHORE.available_permits()
    );

    let mut ok = true;
    let mut check = |cond: bool, what: &str| {
        if !cond {
            hprintln!("FAILED: {}", what);
            ok = false;
        }
    };
    check(bucket_total == bucket_expected, "bucket admitted count is not exact");
    check(limiter_total == limiter_expected, "limiter admitted count is not exact");
    check(sem_busy == 0, "the thread found the semaphore taken");
    check(SEMAPHORE.available_permits() == 1, "a semaphore permit leaked");
    // The run proves something only if the interrupt really raced the thread code.
    check(irqs >= 1_000, "too few interrupts");
    check(irq_bucket > 0 && irq_limiter > 0, "the interrupt never got a token");
    check(irq_sem_busy > 0, "the interrupt never met the thread's permit");

    if ok {
        hprintln!("ok");
    }
    exit(ok)
}

/// Ends the QEMU run with exit status 0 or 1.
fn exit(ok: bool) -> ! {
    debug::exit(if ok { debug::EXIT_SUCCESS } else { debug::EXIT_FAILURE });
    // Only reached without semihosting (not under QEMU).
    loop {
        cortex_m::asm::wfi();
    }
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    hprintln!("FAILED: hard fault: {:?}", frame);
    exit(false)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("FAILED: {}", info);
    exit(false)
}
