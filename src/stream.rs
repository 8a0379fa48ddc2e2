//! `Stream` throttling: make each item of a [`futures_core::Stream`] take a token (or a weight
//! computed from the item) from an [`AsyncRateLimiter`] before it is yielded.
//!
//! When the inner stream yields an item, the adapters wait for its tokens through the same
//! wait machine as [`AsyncRateLimiter::acquire`]: items keep their order, and the stream
//! shares the limiter's FIFO line with every other waiter. While an item waits, the
//! inner stream is not polled.

use core::fmt;
use core::pin::Pin;
use core::task::{Context, Poll, ready};

use futures_core::Stream;
use futures_core::stream::FusedStream;
use pin_project_lite::pin_project;

#[cfg(feature = "alloc")]
use alloc::sync::Arc;

#[cfg(feature = "alloc")]
use crate::acquire::borrow_for_static;
use crate::wait::{Limit, TokenWait};
use crate::{AsyncRateLimiter, Error, Timer};

/// Rate limiting for any [`Stream`]: `stream.rate_limited(&limiter)`.
///
/// ```
/// use core::pin::pin;
/// use core::time::Duration;
/// use futures_util::{StreamExt, stream};
/// use tollgate::{AsyncRateLimiter, ManualClock, Rate, StreamRateLimitExt};
///
/// let clock = ManualClock::new();
/// let limiter = AsyncRateLimiter::with_timer(Rate::per_second(2), 2, &clock);
/// let mut lines = pin!(stream::iter(["a", "b", "c"]).rate_limited(&limiter));
/// futures_executor::block_on(async {
///     assert_eq!(lines.next().await, Some("a")); // the burst of 2
///     assert_eq!(lines.next().await, Some("b"));
///     clock.advance(Duration::from_millis(500)); // then one every 500 ms
///     assert_eq!(lines.next().await, Some("c"));
///     assert_eq!(lines.next().await, None);
/// });
/// ```
///
/// With a runtime adapter the limiter needs no timer argument
/// (`tollgate_tokio::AsyncRateLimiter::per_second(2)`). The stream borrows the limiter; to move
/// it into a spawned task, give it the limiter's `Arc` with
/// [`rate_limited_owned`](StreamRateLimitExt::rate_limited_owned) (or put the limiter in a
/// `static`).
pub trait StreamRateLimitExt: Stream {
    /// Each item takes one token: the stream yields at most the limiter's burst at once, then
    /// the limiter's rate (less if other users of the limiter take tokens too).
    ///
    /// # Cancel safety
    /// Dropping the stream while an item waits drops the item and costs the limiter nothing
    /// (it leaves the line and gives back any reservation), as [`AsyncRateLimiter::acquire`].
    fn rate_limited<'a, T: Timer>(self, limiter: &'a AsyncRateLimiter<T>) -> Throttle<'a, Self, T>
    where
        Self: Sized,
    {
        Throttle { stream: self, wait: TokenWait::idle(limiter), item: None, never: false }
    }

    /// Each item takes `weigh(&item)` tokens, e.g. its size in bytes for a bandwidth limit.
    ///
    /// The stream yields `Ok(item)` once its tokens are ready. An item that can never be
    /// admitted — heavier than the limiter's burst — is yielded at once as
    /// `Err(RejectedItem { item, error })` with [`Error::InsufficientCapacity`]: waiting
    /// would hang forever, and quietly clamping its weight would break the limit, so the
    /// decision (split it, drop it, send it anyway) is yours. Nothing is charged for it and
    /// the stream goes on. Likewise an item whose tokens could only come after the end of the
    /// clock is handed back with [`Error::MaxWaitExceeded`] (`ready_at == Instant::MAX`). A weight of 0 takes no tokens, but never overtakes
    /// a waiter already queued.
    ///
    /// ```
    /// use core::pin::pin;
    /// use futures_util::{StreamExt, stream};
    /// use tollgate::{AsyncRateLimiter, Error, ManualClock, Rate, StreamRateLimitExt};
    ///
    /// let clock = ManualClock::new();
    /// let bytes_per_sec = AsyncRateLimiter::with_timer(Rate::per_second(1_000), 1_000, &clock);
    /// let chunks = stream::iter([vec![0u8; 600], vec![0; 5_000], vec![0; 400]]);
    /// let mut sent = pin!(chunks.rate_limited_by(&bytes_per_sec, |c| c.len() as u64));
    /// futures_executor::block_on(async {
    ///     assert_eq!(sent.next().await.unwrap().unwrap().len(), 600);
    ///     let too_big = sent.next().await.unwrap().unwrap_err();
    ///     assert_eq!(too_big.item.len(), 5_000);
    ///     assert!(matches!(too_big.error, Error::InsufficientCapacity { .. }));
    ///     assert_eq!(sent.next().await.unwrap().unwrap().len(), 400);
    /// });
    /// ```
    ///
    /// # Cancel safety
    /// As [`StreamRateLimitExt::rate_limited`].
    fn rate_limited_by<'a, T, F>(
        self,
        limiter: &'a AsyncRateLimiter<T>,
        weigh: F,
    ) -> ThrottleBy<'a, Self, T, F>
    where
        Self: Sized,
        T: Timer,
        F: FnMut(&Self::Item) -> u64,
    {
        ThrottleBy { stream: self, wait: TokenWait::idle(limiter), item: None, weigh }
    }

    /// [`rate_limited`](StreamRateLimitExt::rate_limited) holding the limiter's `Arc`: the
    /// stream is `'static` (when the inner stream is), so it can be moved into a spawned task
    /// without a `static` limiter.
    ///
    /// ```
    /// use core::pin::pin;
    /// use std::sync::Arc;
    /// use futures_util::{StreamExt, stream};
    /// use tollgate::{AsyncRateLimiter, ManualClock, Rate, StreamRateLimitExt};
    ///
    /// let limiter = Arc::new(AsyncRateLimiter::with_timer(Rate::per_second(2), 2, ManualClock::new()));
    /// let lines = stream::iter(["a", "b"]).rate_limited_owned(Arc::clone(&limiter));
    /// let worker = std::thread::spawn(move || {
    ///     futures_executor::block_on(pin!(lines).collect::<Vec<_>>())
    /// });
    /// assert_eq!(worker.join().unwrap(), ["a", "b"]);
    /// assert_eq!(limiter.available(), 0); // the stream took the burst
    /// ```
    ///
    /// # Cancel safety
    /// As [`StreamRateLimitExt::rate_limited`].
    #[cfg(feature = "alloc")]
    #[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
    fn rate_limited_owned<T>(self, limiter: Arc<AsyncRateLimiter<T>>) -> ThrottleOwned<Self, T>
    where
        Self: Sized,
        T: Timer + 'static,
    {
        // SAFETY: the limiter is in `limiter`'s allocation; `inner`, which borrows it, is
        // dropped first (field order); the `Arc` is never replaced or given away, and no item
        // borrows from the limiter.
        let borrowed = unsafe { borrow_for_static(&*limiter) };
        ThrottleOwned { inner: self.rate_limited(borrowed), limiter }
    }

    /// [`rate_limited_by`](StreamRateLimitExt::rate_limited_by) holding the limiter's `Arc`,
    /// as [`rate_limited_owned`](StreamRateLimitExt::rate_limited_owned).
    ///
    /// # Cancel safety
    /// As [`StreamRateLimitExt::rate_limited`].
    #[cfg(feature = "alloc")]
    #[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
    fn rate_limited_by_owned<T, F>(
        self,
        limiter: Arc<AsyncRateLimiter<T>>,
        weigh: F,
    ) -> ThrottleByOwned<Self, T, F>
    where
        Self: Sized,
        T: Timer + 'static,
        F: FnMut(&Self::Item) -> u64,
    {
        // SAFETY: as in `rate_limited_owned`.
        let borrowed = unsafe { borrow_for_static(&*limiter) };
        ThrottleByOwned { inner: self.rate_limited_by(borrowed, weigh), limiter }
    }
}

impl<S: Stream + ?Sized> StreamRateLimitExt for S {}

pin_project! {
    /// The stream returned by [`StreamRateLimitExt::rate_limited`].
    #[must_use = "streams do nothing unless polled"]
    pub struct Throttle<'a, S: Stream, T: Timer> {
        #[pin]
        stream: S,
        #[pin]
        wait: TokenWait<'a, T>,
        // The item whose tokens `wait` is waiting for.
        item: Option<S::Item>,
        // Its token can never come (past the end of the clock): like `acquire`, wait forever
        // rather than yield it without one.
        never: bool,
    }
}

pin_project! {
    /// The stream returned by [`StreamRateLimitExt::rate_limited_by`].
    #[must_use = "streams do nothing unless polled"]
    pub struct ThrottleBy<'a, S: Stream, T: Timer, F> {
        #[pin]
        stream: S,
        #[pin]
        wait: TokenWait<'a, T>,
        item: Option<S::Item>,
        weigh: F,
    }
}

#[cfg(feature = "alloc")]
pin_project! {
    /// The stream returned by [`StreamRateLimitExt::rate_limited_owned`]: as [`Throttle`],
    /// holding the limiter's `Arc`.
    #[must_use = "streams do nothing unless polled"]
    pub struct ThrottleOwned<S, T>
    where
        S: Stream,
        T: Timer,
        T: 'static,
    {
        // Declared before `limiter`, so it is dropped first: it borrows from it.
        #[pin]
        inner: Throttle<'static, S, T>,
        limiter: Arc<AsyncRateLimiter<T>>,
    }
}

#[cfg(feature = "alloc")]
pin_project! {
    /// The stream returned by [`StreamRateLimitExt::rate_limited_by_owned`]: as
    /// [`ThrottleBy`], holding the limiter's `Arc`.
    #[must_use = "streams do nothing unless polled"]
    pub struct ThrottleByOwned<S, T, F>
    where
        S: Stream,
        T: Timer,
        T: 'static,
    {
        // Declared before `limiter`, so it is dropped first: it borrows from it.
        #[pin]
        inner: ThrottleBy<'static, S, T, F>,
        limiter: Arc<AsyncRateLimiter<T>>,
    }
}

/// A stream item that the limiter can never admit, handed back unthrottled by
/// [`StreamRateLimitExt::rate_limited_by`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedItem<I> {
    /// The item itself, so nothing is lost.
    pub item: I,
    /// Why: [`Error::InsufficientCapacity`] when its weight exceeds the burst.
    pub error: Error,
}

impl<I> fmt::Display for RejectedItem<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stream item not admitted: {}", self.error)
    }
}

impl<I: fmt::Debug> core::error::Error for RejectedItem<I> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// An item of [`ThrottleBy`].
type Weighed<I> = Result<I, RejectedItem<I>>;

/// The shared state machine: wait for the pending item's tokens, or pull the next item and
/// start waiting for its tokens.
fn poll_throttled<'a, S: Stream, T: Timer + 'a>(
    mut stream: Pin<&mut S>,
    mut wait: Pin<&mut TokenWait<'a, T>>,
    pending: &mut Option<S::Item>,
    cx: &mut Context<'_>,
    mut weigh: impl FnMut(&S::Item) -> u64,
) -> Poll<Option<Weighed<S::Item>>> {
    if pending.is_none() {
        let Some(item) = ready!(stream.as_mut().poll_next(cx)) else {
            return Poll::Ready(None);
        };
        wait.as_mut().start(weigh(&item), Limit::Forever);
        *pending = Some(item);
    }
    let outcome = ready!(wait.poll_wait(cx));
    Poll::Ready(pending.take().map(|item| match outcome {
        Ok(()) => Ok(item),
        Err(error) => Err(RejectedItem { item, error }),
    }))
}

fn size_hint_with(pending: bool, (low, high): (usize, Option<usize>)) -> (usize, Option<usize>) {
    let extra = usize::from(pending);
    (low.saturating_add(extra), high.and_then(|h| h.checked_add(extra)))
}

/// One token per item, over [`poll_throttled`]: the state machine of [`Throttle`] and
/// [`ThrottleOwned`].
fn poll_one_each<'a, S: Stream, T: Timer + 'a>(
    stream: Pin<&mut S>,
    wait: Pin<&mut TokenWait<'a, T>>,
    pending: &mut Option<S::Item>,
    never: &mut bool,
    cx: &mut Context<'_>,
) -> Poll<Option<S::Item>> {
    if *never {
        return Poll::Pending;
    }
    match ready!(poll_throttled(stream, wait, pending, cx, |_| 1)) {
        None => Poll::Ready(None),
        Some(Ok(item)) => Poll::Ready(Some(item)),
        // One token always fits the burst, so this is "never": keep the item and wait
        // forever, as `acquire` does, rather than let it through without a token.
        Some(Err(rejected)) => {
            *pending = Some(rejected.item);
            *never = true;
            Poll::Pending
        }
    }
}

impl<S: Stream, T: Timer> Stream for Throttle<'_, S, T> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = self.project();
        poll_one_each(this.stream, this.wait, this.item, this.never, cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        size_hint_with(self.item.is_some(), self.stream.size_hint())
    }
}

impl<S, T, F> Stream for ThrottleBy<'_, S, T, F>
where
    S: Stream,
    T: Timer,
    F: FnMut(&S::Item) -> u64,
{
    type Item = Result<S::Item, RejectedItem<S::Item>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        poll_throttled(this.stream, this.wait, this.item, cx, this.weigh)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        size_hint_with(self.item.is_some(), self.stream.size_hint())
    }
}

impl<S: FusedStream, T: Timer> FusedStream for Throttle<'_, S, T> {
    fn is_terminated(&self) -> bool {
        self.item.is_none() && self.stream.is_terminated()
    }
}

impl<S, T, F> FusedStream for ThrottleBy<'_, S, T, F>
where
    S: FusedStream,
    T: Timer,
    F: FnMut(&S::Item) -> u64,
{
    fn is_terminated(&self) -> bool {
        self.item.is_none() && self.stream.is_terminated()
    }
}

impl<S: Stream + fmt::Debug, T: Timer> fmt::Debug for Throttle<'_, S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Throttle")
            .field("stream", &self.stream)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl<S: Stream + fmt::Debug, T: Timer, F> fmt::Debug for ThrottleBy<'_, S, T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThrottleBy")
            .field("stream", &self.stream)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

// The owned throttles are their borrowing forms plus the `Arc`: everything is forwarded.

#[cfg(feature = "alloc")]
impl<S: Stream, T: Timer + 'static> Stream for ThrottleOwned<S, T> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        self.project().inner.poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

#[cfg(feature = "alloc")]
impl<S, T, F> Stream for ThrottleByOwned<S, T, F>
where
    S: Stream,
    T: Timer + 'static,
    F: FnMut(&S::Item) -> u64,
{
    type Item = Weighed<S::Item>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.project().inner.poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

#[cfg(feature = "alloc")]
impl<S: FusedStream, T: Timer + 'static> FusedStream for ThrottleOwned<S, T> {
    fn is_terminated(&self) -> bool {
        self.inner.is_terminated()
    }
}

#[cfg(feature = "alloc")]
impl<S, T, F> FusedStream for ThrottleByOwned<S, T, F>
where
    S: FusedStream,
    T: Timer + 'static,
    F: FnMut(&S::Item) -> u64,
{
    fn is_terminated(&self) -> bool {
        self.inner.is_terminated()
    }
}

#[cfg(feature = "alloc")]
impl<S: Stream + fmt::Debug, T: Timer + 'static> fmt::Debug for ThrottleOwned<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ThrottleOwned").field(&self.inner).finish()
    }
}

#[cfg(feature = "alloc")]
impl<S: Stream + fmt::Debug, T: Timer + 'static, F> fmt::Debug for ThrottleByOwned<S, T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ThrottleByOwned").field(&self.inner).finish()
    }
}

#[cfg(feature = "alloc")]
impl<S: Stream, T: Timer + 'static> ThrottleOwned<S, T> {
    /// The limiter the items wait on.
    pub fn limiter(&self) -> &Arc<AsyncRateLimiter<T>> {
        &self.limiter
    }

    /// The inner stream.
    pub fn get_ref(&self) -> &S {
        self.inner.get_ref()
    }

    /// The inner stream, without the item that may be waiting for its token.
    pub fn into_inner(self) -> S {
        // `inner` (and its wait, which borrows the limiter) goes first, then `limiter`.
        self.inner.into_inner()
    }
}

#[cfg(feature = "alloc")]
impl<S: Stream, T: Timer + 'static, F> ThrottleByOwned<S, T, F> {
    /// The limiter the items wait on.
    pub fn limiter(&self) -> &Arc<AsyncRateLimiter<T>> {
        &self.limiter
    }

    /// The inner stream.
    pub fn get_ref(&self) -> &S {
        self.inner.get_ref()
    }

    /// The inner stream, without the item that may be waiting for its token.
    pub fn into_inner(self) -> S {
        // As for `ThrottleOwned`.
        self.inner.into_inner()
    }
}

impl<'a, S: Stream, T: Timer> Throttle<'a, S, T> {
    /// The limiter the items wait on.
    pub fn limiter(&self) -> &'a AsyncRateLimiter<T> {
        self.wait.limiter()
    }

    /// The inner stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The inner stream, without the item that may be waiting for its token.
    pub fn into_inner(self) -> S {
        self.stream
    }
}

impl<'a, S: Stream, T: Timer, F> ThrottleBy<'a, S, T, F> {
    /// The limiter the items wait on.
    pub fn limiter(&self) -> &'a AsyncRateLimiter<T> {
        self.wait.limiter()
    }

    /// The inner stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The inner stream, without the item that may be waiting for its token.
    pub fn into_inner(self) -> S {
        self.stream
    }
}

#[cfg(all(test, feature = "alloc", not(tollgate_loom)))]
mod tests {
    use alloc::boxed::Box;
    use alloc::sync::Arc;
    use core::pin::pin;
    use core::time::Duration;

    use futures_util::stream;
    use futures_util::task::noop_waker;

    use super::*;
    use crate::{Clock, Instant, ManualClock, Rate, Refusal};

    /// Polls once with a no-op waker.
    fn poll_once<St: Stream>(s: Pin<&mut St>) -> Poll<Option<St::Item>> {
        let waker = noop_waker();
        s.poll_next(&mut Context::from_waker(&waker))
    }

    /// Found in review (issue 8): when a token could never come, `rate_limited` yielded the
    /// item anyway — 10 items through with 3 tokens in existence. It must wait forever.
    #[test]
    fn no_item_passes_without_a_token() {
        let clock = ManualClock::new();
        clock.set(Instant::MAX); // the end of the clock: spent tokens never come back
        let limiter = AsyncRateLimiter::with_timer(Rate::per_day(1), 3, &clock);
        let mut items = pin!(stream::iter(0..10).rate_limited(&limiter));
        let mut passed = 0;
        for _ in 0..10 {
            if let Poll::Ready(Some(_)) = poll_once(items.as_mut()) {
                passed += 1;
            }
        }
        assert_eq!(passed, 3);
        let mut weighed = pin!(stream::iter([1u64, 1]).rate_limited_by(&limiter, |w| *w));
        match poll_once(weighed.as_mut()) {
            Poll::Ready(Some(Err(rejected))) => {
                assert_eq!(rejected.error, Error::MaxWaitExceeded { ready_at: Instant::MAX })
            }
            other => panic!("expected the item back with an error, got {other:?}"),
        }
    }

    #[test]
    fn items_come_in_a_burst_then_at_the_rate() {
        let clock = ManualClock::new();
        let limiter = AsyncRateLimiter::with_timer(Rate::per_second(2), 2, &clock);
        let mut s = pin!(stream::iter(0..5).rate_limited(&limiter));
        assert_eq!(poll_once(s.as_mut()), Poll::Ready(Some(0)));
        assert_eq!(poll_once(s.as_mut()), Poll::Ready(Some(1)));
        for (i, at_ms) in [(2, 500), (3, 1_000), (4, 1_500)] {
            assert!(poll_once(s.as_mut()).is_pending());
            assert_eq!(s.size_hint(), (5 - i, Some(5 - i)), "the waiting item counts");
            assert_eq!(clock.next_deadline(), Some(Instant::from_millis(at_ms)));
            clock.advance(Duration::from_millis(499));
            assert!(poll_once(s.as_mut()).is_pending());
            assert_eq!(clock.sleepers(), 1, "one sleep per item, re-armed only on wake-up");
            clock.advance(Duration::from_millis(1));
            assert_eq!(poll_once(s.as_mut()), Poll::Ready(Some(i)));
        }
        assert_eq!(poll_once(s.as_mut()), Poll::Ready(None));
        assert_eq!(clock.now(), Instant::from_millis(1_500));
    }

    #[test]
    fn the_stream_queues_behind_other_waiters_fifo() {
        let clock = ManualClock::new();
        let limiter = AsyncRateLimiter::with_timer(Rate::per_second(1), 1, &clock);
        limiter.try_acquire().unwrap();
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut earlier = pin!(limiter.acquire());
        assert!(core::future::Future::poll(earlier.as_mut(), &mut cx).is_pending()); // 1 s
        let mut s = pin!(stream::iter(["late"]).rate_limited(&limiter));
        assert!(poll_once(s.as_mut()).is_pending()); // 2 s
        clock.advance(Duration::from_secs(1));
        assert!(poll_once(s.as_mut()).is_pending());
        assert!(core::future::Future::poll(earlier.as_mut(), &mut cx).is_ready());
        clock.advance(Duration::from_secs(1));
        assert_eq!(poll_once(s.as_mut()), Poll::Ready(Some("late")));
    }

    #[test]
    fn weighted_items_take_their_weight() {
        let clock = ManualClock::new();
        let limiter = AsyncRateLimiter::with_timer(Rate::per_second(10), 10, &clock);
        let mut s = pin!(stream::iter([4u64, 6, 5, 0]).rate_limited_by(&limiter, |w| *w));
        assert_eq!(poll_once(s.as_mut()), Poll::Ready(Some(Ok(4))));
        assert_eq!(poll_once(s.as_mut()), Poll::Ready(Some(Ok(6))));
        assert!(poll_once(s.as_mut()).is_pending());
        assert_eq!(clock.next_deadline(), Some(Instant::from_millis(500)));
        clock.advance(Duration::from_millis(500));
        assert_eq!(poll_once(s.as_mut()), Poll::Ready(Some(Ok(5))));
        assert_eq!(poll_once(s.as_mut()), Poll::Ready(Some(Ok(0))), "weight 0 is free");
        assert_eq!(poll_once(s.as_mut()), Poll::Ready(None));
        assert_eq!(limiter.available(), 0);
    }

    #[test]
    fn an_item_heavier_than_the_burst_is_handed_back_without_waiting() {
        let clock = ManualClock::new();
        let limiter = AsyncRateLimiter::with_timer(Rate::per_second(10), 10, &clock);
        let mut s = pin!(stream::iter([11u64, 3]).rate_limited_by(&limiter, |w| *w));
        let rejected = RejectedItem {
            item: 11,
            error: Error::InsufficientCapacity { requested: 11, capacity: 10 },
        };
        assert_eq!(poll_once(s.as_mut()), Poll::Ready(Some(Err(rejected))));
        assert_eq!(limiter.available(), 10, "nothing charged for it");
        assert_eq!(poll_once(s.as_mut()), Poll::Ready(Some(Ok(3))));
        assert_eq!(clock.sleepers(), 0);
    }

    #[test]
    fn dropping_the_stream_gives_the_reservation_back() {
        let clock = ManualClock::new();
        let limiter = AsyncRateLimiter::with_timer(Rate::per_second(1), 1, &clock);
        {
            let mut s = pin!(stream::iter(0..3).rate_limited(&limiter));
            assert_eq!(poll_once(s.as_mut()), Poll::Ready(Some(0)));
            assert!(poll_once(s.as_mut()).is_pending()); // item 1 holds the 1 s slot
            assert_eq!(clock.sleepers(), 1);
        }
        assert_eq!(clock.sleepers(), 0);
        // As if item 1 never came: the next token is ready at 1 s, not 2 s.
        assert_eq!(
            limiter.try_acquire(),
            Err(Error::RateLimited(Refusal::at(Instant::from_secs(1))))
        );
    }

    #[test]
    fn an_owned_throttle_is_static_paced_and_lets_go_of_its_limiter() {
        fn assert_static_send<X: 'static + Send>(_: &X) {}
        let clock = Arc::new(ManualClock::new());
        let limiter =
            Arc::new(AsyncRateLimiter::with_timer(Rate::per_second(2), 1, Arc::clone(&clock)));
        {
            let mut s = Box::pin(stream::iter(0..3).rate_limited_owned(Arc::clone(&limiter)));
            assert_static_send(&s);
            assert_eq!(poll_once(s.as_mut()), Poll::Ready(Some(0)));
            assert!(poll_once(s.as_mut()).is_pending());
            assert_eq!(clock.next_deadline(), Some(Instant::from_millis(500)));
            clock.advance(Duration::from_millis(500));
            assert_eq!(poll_once(s.as_mut()), Poll::Ready(Some(1)));
            assert!(poll_once(s.as_mut()).is_pending()); // item 2 holds the 1 s slot
            assert_eq!(Arc::strong_count(&limiter), 2);
        }
        // Dropped while waiting: the reservation came back, and so did the `Arc`.
        assert_eq!(Arc::strong_count(&limiter), 1);
        assert_eq!(
            limiter.try_acquire(),
            Err(Error::RateLimited(Refusal::at(Instant::from_secs(1))))
        );
        let weighed = stream::iter([2u64, 1]).rate_limited_by_owned(Arc::clone(&limiter), |w| *w);
        let mut weighed = Box::pin(weighed);
        assert_static_send(&weighed);
        let rejected = RejectedItem {
            item: 2,
            error: Error::InsufficientCapacity { requested: 2, capacity: 1 },
        };
        assert_eq!(poll_once(weighed.as_mut()), Poll::Ready(Some(Err(rejected))));
        assert!(poll_once(weighed.as_mut()).is_pending());
        clock.advance(Duration::from_millis(500));
        assert_eq!(poll_once(weighed.as_mut()), Poll::Ready(Some(Ok(1))));
        assert_eq!(weighed.limiter().rate(), Rate::per_second(2));
    }

    #[test]
    fn works_under_an_executor_with_time_advanced_by_hand() {
        use futures_util::StreamExt;
        let clock = ManualClock::new();
        let limiter = AsyncRateLimiter::with_timer(Rate::per_second(4), 1, &clock);
        let mut s = pin!(stream::iter(1..=4).fuse().rate_limited(&limiter));
        let mut seen = [Instant::ZERO; 4];
        futures_executor::block_on(async {
            for slot in &mut seen {
                // Move time the way a paused runtime clock does: to the next deadline whenever
                // everything is asleep.
                let item = core::future::poll_fn(|cx| match s.as_mut().poll_next(cx) {
                    Poll::Pending => {
                        assert!(clock.advance_to_next_deadline(), "pending without a sleeper");
                        Poll::Pending
                    }
                    ready => ready,
                })
                .await;
                assert!(item.is_some());
                *slot = clock.now();
            }
            assert_eq!(s.next().await, None);
            assert!(s.is_terminated());
        });
        assert_eq!(seen.map(|t| t.as_millis()), [0, 250, 500, 750]);
    }
}
