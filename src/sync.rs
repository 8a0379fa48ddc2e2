//! The one place every atomic and lock comes from.
//!
//! Swapping this module is how the same code runs on plain `core` atomics, on `portable-atomic`
//! (targets without 64-bit atomics or without CAS), and under the `loom` model checker
//! (`RUSTFLAGS="--cfg tollgate_loom"`). Nothing else in the crate names `core::sync::atomic`.

// Not every configuration uses every type.
#[cfg(tollgate_loom)]
#[allow(unused_imports)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

#[cfg(all(
    not(tollgate_loom),
    any(feature = "portable-atomic", not(target_has_atomic = "64"))
))]
#[allow(unused_imports)]
pub(crate) use portable_atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

#[cfg(all(
    not(tollgate_loom),
    not(any(feature = "portable-atomic", not(target_has_atomic = "64")))
))]
#[allow(unused_imports)]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

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
/// site works over `std`, `critical-section`, a spin lock, and loom.
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

#[cfg(all(not(tollgate_loom), not(feature = "std"), feature = "critical-section"))]
mod mutex {
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

#[cfg(all(not(tollgate_loom), not(feature = "std"), not(feature = "critical-section")))]
mod mutex {
    //! Spin lock for `no_std` without `critical-section`. Critical sections are a few field
    //! writes, so spinning is cheap; it is not interrupt-safe, which is why firmware that
    //! touches a limiter from an interrupt handler should enable `critical-section`.
    use super::{AtomicBool, Ordering};
    use core::cell::UnsafeCell;

    pub(crate) struct Mutex<T> {
        locked: AtomicBool,
        value: UnsafeCell<T>,
    }

    // SAFETY: access to `value` is serialised by `locked` (acquire on lock, release on unlock),
    // so sharing the mutex is as safe as sending the value between threads.
    unsafe impl<T: Send> Sync for Mutex<T> {}
    // SAFETY: the mutex owns its value.
    unsafe impl<T: Send> Send for Mutex<T> {}

    impl<T> Mutex<T> {
        pub(crate) const fn new(value: T) -> Self {
            Self { locked: AtomicBool::new(false), value: UnsafeCell::new(value) }
        }

        pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
            while self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                core::hint::spin_loop();
            }
            struct Unlock<'a>(&'a AtomicBool);
            impl Drop for Unlock<'_> {
                fn drop(&mut self) {
                    self.0.store(false, Ordering::Release);
                }
            }
            let _unlock = Unlock(&self.locked);
            // SAFETY: we hold the lock until `_unlock` drops, so this is the only reference.
            f(unsafe { &mut *self.value.get() })
        }
    }
}
