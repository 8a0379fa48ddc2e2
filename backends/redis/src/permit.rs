//! [`ModelPermit`]: an admitted request of the Redis-backed model limiter, holding a parallel
//! slot (a lease) until it is settled or dropped.

use core::sync::atomic::Ordering;
use core::time::Duration;
use std::sync::Arc;

use tollgate::model::{Cooldown, Estimate, FeedbackReport, OwnedModelPermit};
use tollgate::provider::Throttled;
use tollgate_tokio::TokioTimer;

use crate::error::{Error, StoreError};
use crate::model::{Ask, Lease, LimiterInner, ModelEntry};

/// An admitted request. Call [`settle`](Self::settle) with the tokens it really used; dropping
/// it unsettled releases its slot in the background and leaves the estimate charged (the safe
/// choice when the actual count is unknown).
#[must_use = "dropping the permit at once releases its slot; hold it while the request runs"]
#[derive(Debug)]
pub struct ModelPermit {
    estimate: Estimate,
    state: PermitState,
    /// A degraded permit's limiter and model, where its feedback goes (a Redis one's hold
    /// has them).
    shared: Option<(Arc<LimiterInner>, Arc<ModelEntry>)>,
}

#[derive(Debug)]
pub(crate) enum PermitState {
    /// Counted in Redis.
    Redis(RedisHold),
    /// Counted by the local fallback limiter while Redis was unreachable.
    Local(OwnedModelPermit<TokioTimer>),
    /// Admitted without counting (fail open).
    Open,
}

/// A slot held in Redis: the lease the heartbeat renews and the admission record's id.
#[derive(Debug)]
pub(crate) struct RedisHold {
    pub(crate) limiter: Arc<LimiterInner>,
    pub(crate) entry: Arc<ModelEntry>,
    pub(crate) id: String,
    pub(crate) lease: Arc<Lease>,
    pub(crate) admitted_at_us: i64,
    pub(crate) done: bool,
    /// A settle in flight: if its future is dropped before the reply, the janitor sends it
    /// again (it applies at most once).
    pub(crate) settling: Option<Estimate>,
}

/// What a [`settle`](ModelPermit::settle) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Settled {
    /// The actual count replaced the estimate.
    Applied,
    /// The lease had expired first (a pause or partition longer than the lease TTL): the slot
    /// may have gone to another request meanwhile. If the admission record had expired too,
    /// the estimate stays charged.
    LeaseLost,
    /// Counted locally (degraded mode) or not at all (fail open): settled there.
    Local,
}

impl ModelPermit {
    pub(crate) fn new(
        estimate: Estimate,
        state: PermitState,
        shared: Option<(Arc<LimiterInner>, Arc<ModelEntry>)>,
    ) -> Self {
        Self { estimate, state, shared }
    }

    /// The tokens reserved at admission (the estimate's total).
    pub fn estimated_tokens(&self) -> u64 {
        self.estimate.total()
    }

    /// The estimate admitted, input and output apart (a plain count is all input).
    pub fn estimate(&self) -> Estimate {
        self.estimate
    }

    /// When Redis admitted it, in the server's clock (µs since the Unix epoch); `None` when it
    /// was admitted in degraded mode. The same clock for every process: an admission log
    /// across hosts can be checked with it.
    pub fn admitted_at_server_micros(&self) -> Option<i64> {
        match &self.state {
            PermitState::Redis(h) => Some(h.admitted_at_us),
            _ => None,
        }
    }

    /// Whether the heartbeat found this permit's lease expired (it may have been given to
    /// another request: the parallel limit may have been exceeded while this one ran).
    pub fn lease_lost(&self) -> bool {
        match &self.state {
            PermitState::Redis(h) => h.lease.lost.load(Ordering::Relaxed),
            _ => false,
        }
    }

    /// Whether it was admitted in degraded mode (Redis unreachable): locally counted, or not
    /// at all.
    pub fn is_degraded(&self) -> bool {
        !matches!(self.state, PermitState::Redis(_))
    }

    /// Replaces the estimate with `actual_tokens` in every token limit (in the window slot of
    /// the admission, as the in-process limiter does) and releases the slot: one round trip,
    /// shared with this process's other settles and tries of the model. Split as the
    /// in-process limiter splits it: input first, up to the input estimated, the rest output.
    ///
    /// # Errors
    /// [`Error::Store`] if Redis did not answer; the settle is then retried in the background
    /// (it applies at most once), and the lease TTL frees the slot if it never gets through.
    pub async fn settle(self, actual_tokens: u64) -> Result<Settled, Error> {
        let input = actual_tokens.min(self.estimate.input);
        self.settle_io(input, actual_tokens - input).await
    }

    /// As [`settle`](Self::settle) with the actual input and output tokens apart: total-token
    /// limits get their sum, input-token limits the input, output-token limits the output
    /// (charged now for the first time, in the slot of now: the output was produced by the end
    /// of the request, and a provider counts it from then).
    ///
    /// # Errors
    /// As [`settle`](Self::settle).
    pub async fn settle_io(
        mut self,
        input_tokens: u64,
        output_tokens: u64,
    ) -> Result<Settled, Error> {
        let state = core::mem::replace(&mut self.state, PermitState::Open);
        match state {
            PermitState::Open => Ok(Settled::Local),
            PermitState::Local(p) => {
                p.settle_io(input_tokens, output_tokens);
                Ok(Settled::Local)
            }
            PermitState::Redis(mut hold) => {
                let entry = hold.entry.clone();
                // Values beyond exact integer arithmetic count as its largest.
                let most = crate::encode::EXACT / 8;
                let actual =
                    Estimate { input: input_tokens.min(most), output: output_tokens.min(most) };
                // Dropped before the answer, the hold sends the settle again (it applies once).
                hold.settling = Some(actual);
                let ask = Ask::Settle {
                    id: hold.id.clone(),
                    actual: actual.total(),
                    input: actual.input,
                    mode: 0,
                };
                let (answer, _) = crate::line::decide(&entry, ask, None, &mut true).await;
                hold.done = true;
                match answer {
                    Ok(a) if a.v[0] == -2 => {
                        Err(Error::ConfigMismatch { key: entry.keys[0].clone() })
                    }
                    Ok(a) if a.v[0] == 1 && a.v[1] == 1 => Ok(Settled::Applied),
                    Ok(a) if a.v[0] >= 0 => Ok(Settled::LeaseLost),
                    Ok(a) => Err(StoreError::Protocol(format!("model_batch: {a:?}")).into()),
                    Err(e) => {
                        let job = LimiterInner::settle_job(&entry, &hold.id, actual, 0);
                        hold.limiter.store.inner.later(job);
                        Err(Error::Store(e))
                    }
                }
            }
        }
    }
}

/// The provider's answer to a permit's request, applied to the shared state.
impl ModelPermit {
    /// The provider answered this request (not with a 429): settles it with what it used, as
    /// [`settle_io`](Self::settle_io), then applies the answer's rate-limit headers for every
    /// process, as [`ModelRateLimiter::observe`](crate::ModelRateLimiter::observe) does — in
    /// that order (two round trips): the provider's figures count this request at what it
    /// used, and what it counts beyond the shared books is taken for other clients' share;
    /// observed before the settle, a request that used less than its estimate would hide that
    /// much of their share. A permit of the local share (degraded mode) settles and observes
    /// there too, then tells Redis all the same.
    ///
    /// ```no_run
    /// # async fn demo(limiter: tollgate_redis::ModelRateLimiter) -> Result<(), tollgate_redis::Error> {
    /// use tollgate::provider::{Provider, parse_headers};
    ///
    /// let permit = limiter.acquire("gpt-4o", 2_000).await?;
    /// // ... the request used 200 input and 300 output tokens ...
    /// let headers = [("x-ratelimit-limit-tokens", "10000"), ("x-ratelimit-remaining-tokens", "5500")];
    /// let report = parse_headers(Provider::OpenAi, headers, None);
    /// let (_settled, fed) = permit.settle_and_observe(200, 300, &report).await?;
    /// println!("held for the others: {:?}", fed.drained);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`settle_io`](Self::settle_io) (then nothing is observed), and as
    /// [`ModelRateLimiter::observe`](crate::ModelRateLimiter::observe).
    pub async fn settle_and_observe(
        self,
        input_tokens: u64,
        output_tokens: u64,
        headers: &tollgate::provider::HeaderReport,
    ) -> Result<(Settled, FeedbackReport), Error> {
        self.settle_and_observe_seen(input_tokens, output_tokens, headers, None).await
    }

    /// As [`settle_and_observe`](Self::settle_and_observe) for headers received at `seen`
    /// (an instant of the limiter's [`timer`](crate::ModelRateLimiter::timer), no later than
    /// now) and read only now, as
    /// [`ModelRateLimiter::observe_at`](crate::ModelRateLimiter::observe_at) takes them.
    ///
    /// # Errors
    /// As [`settle_and_observe`](Self::settle_and_observe).
    pub async fn settle_and_observe_at(
        self,
        input_tokens: u64,
        output_tokens: u64,
        headers: &tollgate::provider::HeaderReport,
        seen: tollgate::Instant,
    ) -> Result<(Settled, FeedbackReport), Error> {
        self.settle_and_observe_seen(input_tokens, output_tokens, headers, Some(seen)).await
    }

    async fn settle_and_observe_seen(
        mut self,
        input_tokens: u64,
        output_tokens: u64,
        headers: &tollgate::provider::HeaderReport,
        seen: Option<tollgate::Instant>,
    ) -> Result<(Settled, FeedbackReport), Error> {
        let shared = match &self.state {
            PermitState::Redis(hold) => Some((hold.limiter.clone(), hold.entry.clone())),
            _ => self.shared.clone(),
        };
        let Some((limiter, entry)) = shared else {
            return Err(StoreError::Protocol("a permit without its limiter".into()).into());
        };
        let settled = match core::mem::replace(&mut self.state, PermitState::Open) {
            PermitState::Local(p) => {
                // The local share learns it too (it admits while Redis is unreachable).
                let _ = match seen {
                    Some(seen) => {
                        p.settle_and_observe_at(input_tokens, output_tokens, headers, seen)
                    }
                    None => p.settle_and_observe(input_tokens, output_tokens, headers),
                };
                Settled::Local
            }
            state => {
                self.state = state;
                self.settle_io(input_tokens, output_tokens).await?
            }
        };
        let seen = seen.unwrap_or_else(|| tollgate::Clock::now(&limiter.timer));
        let report = limiter.observe_entry(&entry, headers, seen).await?;
        Ok((settled, report))
    }

    /// The provider answered this request with a 429 asking to retry after `retry_after`:
    /// starts (or extends) the model's cooldown for every process sharing it, and ends the
    /// permit in the same round trip — its tokens given back (a refused request produced
    /// none; its request stays counted) and its parallel slot released *into* the cooldown:
    /// the next waiter is woken but admitted only when the cooldown ends, so one 429 never
    /// sends the queue into the same wall. Returns the cooldown in force (on the limiter's
    /// [`timer`](crate::ModelRateLimiter::timer)).
    ///
    /// ```no_run
    /// # async fn demo(limiter: tollgate_redis::ModelRateLimiter) -> Result<(), tollgate_redis::Error> {
    /// use core::time::Duration;
    ///
    /// let permit = limiter.acquire("gpt-4", 500).await?;
    /// // ... the provider answers 429, "retry-after: 2":
    /// let cooldown = permit.rate_limited(Duration::from_secs(2)).await?;
    /// // every process's next admission waits until `cooldown.until`
    /// let permit = limiter.acquire("gpt-4", 500).await?;
    /// # let _ = (cooldown, permit); Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Store`] if Redis did not answer: the others were not told (the
    /// [`Degraded`](crate::Degraded) policy is for admissions only), and the slot is released
    /// in the background. A permit admitted in degraded mode on the local share applies the
    /// cooldown to the local limiter too, then tells Redis all the same.
    pub async fn rate_limited(self, retry_after: Duration) -> Result<Cooldown, Error> {
        let throttled = Throttled::RetryLater { after: Some(retry_after) };
        let report = self.throttled(&throttled).await?;
        report.cooldown.ok_or_else(|| StoreError::Protocol("no cooldown".into()).into())
    }

    /// The provider answered this request with a 429 saying the quota is used up: every
    /// admission of the model, in every process, fails with
    /// [`tollgate::Error::QuotaExhausted`] until `reset_after` from now (`None`: until
    /// [`resume`](crate::ModelRateLimiter::resume)), waiters included. The permit ends in the
    /// same round trip, its tokens given back.
    ///
    /// # Errors
    /// As [`rate_limited`](Self::rate_limited).
    pub async fn quota_exhausted(self, reset_after: Option<Duration>) -> Result<(), Error> {
        self.throttled(&Throttled::QuotaExhausted { reset_after }).await.map(|_| ())
    }

    /// The provider answered this request with a 429, classified by
    /// [`tollgate::provider::classify_429`]: applies it to the model for every process, as
    /// [`ModelRateLimiter::observe_429`](crate::ModelRateLimiter::observe_429) does — a
    /// "retry later" starts or extends the cooldown and this permit's slot goes back *into*
    /// it ([`rate_limited`](Self::rate_limited)), an exhausted quota stops admissions until
    /// its reset — and ends the permit, its tokens given back, in one round trip. The
    /// report's `error` says what this request should fail with when retrying cannot help
    /// (too large for the provider's limit; quota exhausted).
    ///
    /// ```no_run
    /// # async fn demo(limiter: tollgate_redis::ModelRateLimiter) -> Result<(), tollgate_redis::Error> {
    /// use core::time::Duration;
    /// use tollgate::provider::{HeaderReport, Provider, classify_429};
    ///
    /// let permit = limiter.acquire("gpt-4", 500).await?;
    /// let mut headers = HeaderReport::empty(Provider::OpenAi);
    /// headers.retry_after = Some(Duration::from_secs(3));
    /// let report = permit.throttled(&classify_429(&headers, b"rate limited")).await?;
    /// assert!(report.cooldown.is_some());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`rate_limited`](Self::rate_limited).
    pub async fn throttled(mut self, throttled: &Throttled) -> Result<FeedbackReport, Error> {
        let state = core::mem::replace(&mut self.state, PermitState::Open);
        let never_fits = matches!(throttled, Throttled::NeverFits { .. });
        let (limiter, entry, hold) = match state {
            PermitState::Redis(hold) => (hold.limiter.clone(), hold.entry.clone(), Some(hold)),
            other => {
                let Some((limiter, entry)) = self.shared.take() else {
                    return Err(StoreError::Protocol("a permit without its limiter".into()).into());
                };
                if let PermitState::Local(p) = other {
                    // The local share learns it too (it admits while Redis is unreachable).
                    let _ = p.throttled(throttled);
                }
                (limiter, entry, None)
            }
        };
        let model = entry.name.as_str();
        let Some(mut hold) = hold else {
            return limiter.throttled(model, &entry, throttled, None).await;
        };
        if never_fits {
            // Nothing to share: the slot released, the tokens given back, as a settle.
            let report = limiter.throttled(model, &entry, throttled, None).await?;
            self.state = PermitState::Redis(hold);
            self.settle_io(0, 0).await?;
            return Ok(report);
        }
        // Dropped before the answer (or failed), the hold settles to nothing in the
        // background (it applies once: after the feedback call released it, it finds nothing).
        hold.settling = Some(Estimate::default());
        let report = limiter.throttled(model, &entry, throttled, Some(&hold.id)).await?;
        hold.done = true;
        Ok(report)
    }
}

impl Drop for RedisHold {
    fn drop(&mut self) {
        self.entry.leases.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
        if !self.done {
            let job = match self.settling {
                Some(actual) => LimiterInner::settle_job(&self.entry, &self.id, actual, 0),
                None => LimiterInner::settle_job(&self.entry, &self.id, Estimate::default(), 1),
            };
            self.limiter.store.inner.later(job);
        }
    }
}
