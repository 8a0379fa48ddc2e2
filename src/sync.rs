//! The one place every atomic and lock comes from.
//!
//! Swapping this module is how the same code runs on plain `core` atomics, on `portable-atomic`
//! (targets without 64-bit atomics or without CAS), and under the `loom` model checker
//! (`RUSTFLAGS="--cfg tollgate_loom"`). Nothing else in the crate names `core::sync::atomic`.
//!
//! # Interrupt safety
//!
//! Nothing here spins on a lock that an interrupt handler could wait on, so a limiter used from
//! an interrupt and from thread code at once cannot deadlock:
//!
//! - `AtomicU64` (a bucket's whole state) is the native atomic where the target has 64-bit
//!   atomics (`target_has_atomic = "64"`: x86_64, aarch64, riscv64, …), so the bucket is
//!   lock-free there. Elsewhere (every Cortex-M, riscv32, …) it is `cs::AtomicU64` without
//!   `std`: each operation is one `critical_section::with` (on a single-core MCU, interrupts
//!   masked for a few instructions); with `std` (32-bit targets under an OS, where no interrupt
//!   handler runs our code) it is `portable-atomic`'s lock-based fallback. `portable-atomic`'s
//!   fallback is never used without `std`: it is a seqlock whose writers spin with interrupts
//!   enabled, even with its `critical-section` feature on targets that have 32-bit CAS.
//! - `AtomicUsize` is native wherever the target has CAS; on targets without
//!   it (thumbv6m, riscv32imc) it comes from `portable-atomic`, whose `critical-section`
//!   feature (enabled by ours) makes every operation a critical section.
//! - `Mutex` is `std::sync::Mutex` with `std` and `critical_section::Mutex` without it, on every
//!   target (there is no spin lock).
//!
//! So firmware (any build without `std`) that uses a bucket on a target without 64-bit atomics,
//! or anything that locks (`Semaphore`, the waiting queue, `ManualClock`'s sleepers), links
//! `critical-section`'s `acquire`/`release` and must provide an implementation, e.g. `cortex-m`
//! with feature `critical-section-single-core`.

#[cfg(tollgate_loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[cfg(all(
    not(tollgate_loom),
    any(feature = "portable-atomic", not(target_has_atomic = "64"))
))]
pub(crate) use portable_atomic::{AtomicUsize, Ordering};

#[cfg(all(
    not(tollgate_loom),
    not(any(feature = "portable-atomic", not(target_has_atomic = "64")))
))]
pub(crate) use core::sync::atomic::{AtomicUsize, Ordering};

// 64-bit: native where the target has it (through `portable-atomic` if asked, which then is
// the native atomic too).
#[cfg(all(not(tollgate_loom), target_has_atomic = "64", feature = "portable-atomic"))]
pub(crate) use portable_atomic::AtomicU64;

#[cfg(all(not(tollgate_loom), target_has_atomic = "64", not(feature = "portable-atomic")))]
pub(crate) use core::sync::atomic::AtomicU64;

// No native 64-bit atomics, under an OS: `portable-atomic`'s lock-based fallback.
#[cfg(all(not(tollgate_loom), not(target_has_atomic = "64"), feature = "std"))]
pub(crate) use portable_atomic::AtomicU64;

// No native 64-bit atomics, bare metal: a critical section per operation.
#[cfg(all(not(tollgate_loom), not(target_has_atomic = "64"), not(feature = "std")))]
pub(crate) use cs::AtomicU64;

/// Declares a constructor that is `const fn` normally and a plain `fn` under loom, whose
/// atomics cannot be built in const context.
macro_rules! const_fn {
    ($(#[$meta:meta])* $vis:vis fn $name:ident $($rest:tt)*) => {
        #[cfg(not(tollgate_loom))]
        $(#[$meta])* $vis const fn $name $($rest)*
        #[cfg(tollgate_loom)]
        $(#[$meta])* $vis fn $name $($rest)*
    };
}
pub(crate) use const_fn;

pub(crate) use mutex::Mutex;

impl<T> core::fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Mutex { .. }")
    }
}

/// A short-critical-section lock with a closure API, so no guard escapes and the same call
/// site works over `std`, `critical-section` and loom.
#[cfg(tollgate_loom)]
mod mutex {
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(loom::sync::Mutex::new(value))
        }

        pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
            f(&mut self.0.lock().unwrap())
        }
    }
}

#[cfg(all(not(tollgate_loom), feature = "std"))]
mod mutex {
    extern crate std;

    pub(crate) struct Mutex<T>(std::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) const fn new(value: T) -> Self {
            Self(std::sync::Mutex::new(value))
        }

        pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
            // A panic inside `f` cannot leave our state half-updated in a way later callers
            // would misread (every critical section is a few field writes), so poisoning is
            // ignored rather than turned into a panic in every other thread.
            let mut guard = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut guard)
        }
    }
}

#[cfg(all(not(tollgate_loom), not(feature = "std")))]
mod mutex {
    //! Without `std`: a critical section (on a single-core MCU, interrupts masked) around each
    //! use, so an interrupt handler never waits for thread code that holds the lock.
    use core::cell::RefCell;

    pub(crate) struct Mutex<T>(critical_section::Mutex<RefCell<T>>);

    impl<T> Mutex<T> {
        pub(crate) const fn new(value: T) -> Self {
            Self(critical_section::Mutex::new(RefCell::new(value)))
        }

        pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
            critical_section::with(|cs| f(&mut self.0.borrow_ref_mut(cs)))
        }
    }
}

#[cfg(all(not(tollgate_loom), not(target_has_atomic = "64"), not(feature = "std")))]
mod cs {
    //! A 64-bit atomic for targets without native 64-bit atomics, built on `critical-section`:
    //! every operation reads and writes the value inside one critical section, which the
    //! implementation guarantees to be exclusive and to order like an acquire at its start and
    //! a release at its end. Every operation is therefore at least as strong as `SeqCst` among
    //! the operations on these atomics, and the `Ordering` arguments are accepted and ignored.
    //!
    //! The same shapes as `core::sync::atomic::AtomicU64`, so the code using it does not know.
    #![allow(dead_code)] // the full shape, whichever subset the crate uses today

    use core::cell::Cell;
    use core::sync::atomic::Ordering;

    /// An interrupt-safe `AtomicU64`: see the module docs.
    pub(crate) struct AtomicU64(critical_section::Mutex<Cell<u64>>);

    impl core::fmt::Debug for AtomicU64 {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            core::fmt::Debug::fmt(&self.load(Ordering::Relaxed), f)
        }
    }

    impl AtomicU64 {
        pub(crate) const fn new(value: u64) -> Self {
            Self(critical_section::Mutex::new(Cell::new(value)))
        }

        #[inline]
        fn update<R>(&self, f: impl FnOnce(&Cell<u64>) -> R) -> R {
            critical_section::with(|cs| f(self.0.borrow(cs)))
        }

        pub(crate) fn into_inner(self) -> u64 {
            self.0.into_inner().into_inner()
        }

        pub(crate) fn get_mut(&mut self) -> &mut u64 {
            self.0.get_mut().get_mut()
        }

        #[inline]
        pub(crate) fn load(&self, _: Ordering) -> u64 {
            self.update(Cell::get)
        }

        #[inline]
        pub(crate) fn store(&self, value: u64, _: Ordering) {
            self.update(|v| v.set(value));
        }

        #[inline]
        pub(crate) fn swap(&self, value: u64, _: Ordering) -> u64 {
            self.update(|v| v.replace(value))
        }

        #[inline]
        pub(crate) fn compare_exchange(
            &self,
            current: u64,
            new: u64,
            _: Ordering,
            _: Ordering,
        ) -> Result<u64, u64> {
            self.update(|v| {
                let old = v.get();
                if old == current {
                    v.set(new);
                    Ok(old)
                } else {
                    Err(old)
                }
            })
        }

        /// Never fails spuriously.
        #[inline]
        pub(crate) fn compare_exchange_weak(
            &self,
            current: u64,
            new: u64,
            success: Ordering,
            failure: Ordering,
        ) -> Result<u64, u64> {
            self.compare_exchange(current, new, success, failure)
        }

        /// `f` runs inside the critical section, once: keep it short.
        #[inline]
        pub(crate) fn fetch_update(
            &self,
            _: Ordering,
            _: Ordering,
            f: impl FnOnce(u64) -> Option<u64>,
        ) -> Result<u64, u64> {
            self.update(|v| {
                let old = v.get();
                match f(old) {
                    Some(new) => {
                        v.set(new);
                        Ok(old)
                    }
                    None => Err(old),
                }
            })
        }

        #[inline]
        fn fetch_with(&self, f: impl FnOnce(u64) -> u64) -> u64 {
            self.update(|v| {
                let old = v.get();
                v.set(f(old));
                old
            })
        }

        /// Wraps around on overflow, as the native one.
        #[inline]
        pub(crate) fn fetch_add(&self, value: u64, _: Ordering) -> u64 {
            self.fetch_with(|old| old.wrapping_add(value))
        }

        /// Wraps around on overflow, as the native one.
        #[inline]
        pub(crate) fn fetch_sub(&self, value: u64, _: Ordering) -> u64 {
            self.fetch_with(|old| old.wrapping_sub(value))
        }

        #[inline]
        pub(crate) fn fetch_max(&self, value: u64, _: Ordering) -> u64 {
            self.fetch_with(|old| old.max(value))
        }

        #[inline]
        pub(crate) fn fetch_min(&self, value: u64, _: Ordering) -> u64 {
            self.fetch_with(|old| old.min(value))
        }
    }
}
