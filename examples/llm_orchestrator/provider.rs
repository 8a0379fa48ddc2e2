//! The simulated provider: per model, an exact 60-second log shared by every client of one API
//! key (the job and its neighbour), a 429 on any violation with `retry-after` (and
//! `retry-after-ms`, OpenAI-style) saying exactly when room comes back, and the model's limits
//! on every response in the real header formats (OpenAI's `x-ratelimit-*`, Anthropic's
//! `anthropic-ratelimit-*`).

use core::time::Duration;
use std::collections::VecDeque;

use tokio::time::Instant;

use super::wire::{WALL_AT_START, go_duration, rfc3339};

pub const WINDOW: Duration = Duration::from_secs(60);

/// Which header formats a model answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, resets as Go durations;
    /// `retry-after` and `retry-after-ms` on a 429.
    OpenAi,
    /// `anthropic-ratelimit-{requests,input-tokens,output-tokens}-{limit,remaining,reset}`,
    /// remaining tokens rounded to the thousand, resets as RFC 3339 instants; `retry-after`
    /// (whole seconds) on a 429.
    Anthropic,
}

/// The provider's limits for one model, per 60 s. `None`: not enforced.
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    pub rpm: u64,
    /// Total tokens: input plus `max_tokens` on arrival, corrected to input plus the actual
    /// output when the response ends (OpenAI).
    pub tpm: Option<u64>,
    /// Input tokens, charged on arrival (Anthropic's ITPM).
    pub itpm: Option<u64>,
    /// Output tokens, counted when the response ends (what it produced: `max_tokens` does
    /// not count), in the minute the request arrived, as the total-token charge is
    /// corrected; a request is refused while the window is full (Anthropic's OTPM).
    pub otpm: Option<u64>,
    /// The job's requests in flight at once. The neighbour's are not capped: no header
    /// reports concurrency, so feedback cannot learn it and it is not what this shows.
    pub parallel: u32,
}

/// The limit that binds a model's job, for the report and the chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    Requests,
    Tokens,
    OutputTokens,
}

impl Binding {
    pub fn name(self) -> &'static str {
        match self {
            Binding::Requests => "RPM",
            Binding::Tokens => "TPM",
            Binding::OutputTokens => "OTPM",
        }
    }

    /// Its limit in `quota`.
    pub fn limit(self, quota: &Quota) -> u64 {
        match self {
            Binding::Requests => quota.rpm,
            Binding::Tokens => quota.tpm.unwrap_or(u64::MAX),
            Binding::OutputTokens => quota.otpm.unwrap_or(u64::MAX),
        }
    }

    /// What one served request of `tokens` in all, `output` of them produced, weighs.
    pub fn weight(self, tokens: u64, output: u64) -> u64 {
        match self {
            Binding::Requests => 1,
            Binding::Tokens => tokens,
            Binding::OutputTokens => output,
        }
    }
}

/// Who sent a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    Job,
    Neighbour,
}

/// A request's size: its prompt and its `max_tokens`.
#[derive(Debug, Clone, Copy)]
pub struct Ask {
    pub input: u64,
    pub max_output: u64,
}

/// One answer (a 200 or a 429): its headers as name/value pairs, and a body (429s only).
#[derive(Debug, Clone)]
pub struct Answer {
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// A request in the log, by arrival.
struct Entry {
    id: u64,
    at: Instant,
    /// Total tokens charged (input + max_tokens, then input + actual output).
    tokens: u64,
    input: u64,
    /// Output tokens produced (0 until the response ends).
    output: u64,
    who: Client,
}

/// What one client got from one model, for the report.
#[derive(Debug, Default, Clone)]
pub struct Served {
    /// Admitted by the provider.
    pub requests: u64,
    /// Of those, answered (the rest were still running when the run ended).
    pub served: u64,
    pub tokens: u64,
    pub output: u64,
    pub rejected: u64,
}

/// One model at the provider.
pub struct Model {
    pub style: Style,
    pub quota: Quota,
    started: Instant,
    log: VecDeque<Entry>,
    job_in_flight: u32,
    next_id: u64,
    pub job: Served,
    /// The job's requests admitted in the first `busy` after the start, while it always has
    /// more waiting (only those still in the log when they end: all, for calls shorter than
    /// a window).
    pub job_busy: Served,
    busy: Duration,
    pub neighbour: Served,
    /// When each of the job's requests got a 429, since the start.
    pub job_429s: Vec<Duration>,
}

impl Model {
    /// A model that counts the job's busy-period figures over `busy` from `started`.
    pub fn new(style: Style, quota: Quota, started: Instant, busy: Duration) -> Self {
        Self {
            style,
            quota,
            started,
            log: VecDeque::new(),
            job_in_flight: 0,
            next_id: 0,
            job: Served::default(),
            job_busy: Served::default(),
            busy,
            neighbour: Served::default(),
            job_429s: Vec::new(),
        }
    }

    fn prune(&mut self, now: Instant) {
        while self.log.front().is_some_and(|e| now.duration_since(e.at) >= WINDOW) {
            self.log.pop_front();
        }
    }

    /// Usage in the 60 s ending now: (requests, total tokens, input tokens, output tokens).
    pub fn usage(&mut self, now: Instant) -> (u64, u64, u64, u64) {
        self.prune(now);
        let tokens = self.log.iter().map(|e| e.tokens).sum();
        let input = self.log.iter().map(|e| e.input).sum();
        let output = self.log.iter().map(|e| e.output).sum();
        (self.log.len() as u64, tokens, input, output)
    }

    /// The neighbour's part and the job's of `what` in the 60 s ending now.
    pub fn usage_by(&mut self, now: Instant, what: Binding) -> (u64, u64) {
        self.prune(now);
        let mut split = (0, 0);
        let mut add = |who: Client, n: u64| match who {
            Client::Neighbour => split.0 += n,
            Client::Job => split.1 += n,
        };
        match what {
            Binding::Requests => self.log.iter().for_each(|e| add(e.who, 1)),
            Binding::Tokens => self.log.iter().for_each(|e| add(e.who, e.tokens)),
            Binding::OutputTokens => self.log.iter().for_each(|e| add(e.who, e.output)),
        }
        split
    }

    /// How long until `used - expired ≤ room`, expiring `entries` (time, amount) oldest first
    /// at `time + WINDOW`.
    fn wait_until_fits(
        entries: impl Iterator<Item = (Instant, u64)>,
        mut used: u64,
        room: u64,
        now: Instant,
    ) -> Duration {
        for (at, amount) in entries {
            if used <= room {
                break;
            }
            used -= amount;
            if used <= room {
                return (at + WINDOW).saturating_duration_since(now);
            }
        }
        Duration::ZERO
    }

    /// A request arrives: its id if admitted, or the 429.
    pub fn begin(&mut self, now: Instant, who: Client, ask: Ask) -> Result<u64, Answer> {
        let (requests, tokens, input, output) = self.usage(now);
        let q = self.quota;
        let charge = ask.input + ask.max_output;
        let mut wait = Duration::ZERO;
        let mut what = None;
        let mut refuse = |w: Duration, name: &'static str| {
            if what.is_none() || w > wait {
                wait = wait.max(w);
                what = Some(name);
            }
        };
        if requests + 1 > q.rpm {
            let w =
                Self::wait_until_fits(self.log.iter().map(|e| (e.at, 1)), requests, q.rpm - 1, now);
            refuse(w, "requests");
        }
        if let Some(tpm) = q.tpm.filter(|&tpm| tokens + charge > tpm) {
            let room = tpm.saturating_sub(charge);
            let w =
                Self::wait_until_fits(self.log.iter().map(|e| (e.at, e.tokens)), tokens, room, now);
            refuse(w, "tokens");
        }
        if let Some(itpm) = q.itpm.filter(|&l| input + ask.input > l) {
            let room = itpm.saturating_sub(ask.input);
            let w =
                Self::wait_until_fits(self.log.iter().map(|e| (e.at, e.input)), input, room, now);
            refuse(w, "input tokens");
        }
        if let Some(otpm) = q.otpm.filter(|&l| output >= l) {
            let w = Self::wait_until_fits(
                self.log.iter().map(|e| (e.at, e.output)),
                output,
                otpm - 1,
                now,
            );
            refuse(w, "output tokens");
        }
        if who == Client::Job && self.job_in_flight + 1 > q.parallel {
            // No header says when a slot frees: a second, as providers answer.
            refuse(Duration::from_secs(1), "concurrent requests");
        }
        if let Some(what) = what {
            let served = match who {
                Client::Job => &mut self.job,
                Client::Neighbour => &mut self.neighbour,
            };
            served.rejected += 1;
            if who == Client::Job {
                self.job_429s.push(now - self.started);
            }
            return Err(self.answer_429(now, what, wait));
        }
        self.next_id += 1;
        let id = self.next_id;
        match who {
            Client::Job => self.job.requests += 1,
            Client::Neighbour => self.neighbour.requests += 1,
        }
        self.log.push_back(Entry { id, at: now, tokens: charge, input: ask.input, output: 0, who });
        if who == Client::Job {
            self.job_in_flight += 1;
        }
        Ok(id)
    }

    /// The request `id` ends having produced `output` tokens: its charges are corrected to
    /// what it used (in the minute it arrived), and the answer carries the headers.
    pub fn end(&mut self, now: Instant, who: Client, id: u64, ask: Ask, output: u64) -> Answer {
        let mut arrived = None;
        if let Some(e) = self.log.iter_mut().find(|e| e.id == id) {
            e.tokens = ask.input + output;
            e.output = output;
            arrived = Some(e.at);
        }
        if who == Client::Job && arrived.is_some_and(|at| at < self.started + self.busy) {
            self.job_busy.served += 1;
            self.job_busy.tokens += ask.input + output;
            self.job_busy.output += output;
        }
        let served = match who {
            Client::Job => {
                self.job_in_flight -= 1;
                &mut self.job
            }
            Client::Neighbour => &mut self.neighbour,
        };
        served.served += 1;
        served.tokens += ask.input + output;
        served.output += output;
        Answer { headers: self.headers(now), body: String::new() }
    }

    fn answer_429(&mut self, now: Instant, what: &str, wait: Duration) -> Answer {
        let mut headers = self.headers(now);
        // Whole seconds, rounded up, as HTTP's delta-seconds; OpenAI adds the milliseconds.
        let secs = wait.as_millis().div_ceil(1_000).max(1);
        headers.push(("retry-after", secs.to_string()));
        let body = match self.style {
            Style::OpenAi => {
                headers.push(("retry-after-ms", wait.as_millis().max(1).to_string()));
                format!(
                    "{{\"error\":{{\"message\":\"Rate limit reached for {what}. Please try \
                     again in {}.\",\"type\":\"{what}\",\"code\":\"rate_limit_exceeded\"}}}}",
                    go_duration(wait)
                )
            }
            Style::Anthropic => format!(
                "{{\"type\":\"error\",\"error\":{{\"type\":\"rate_limit_error\",\"message\":\
                 \"This request would exceed the rate limit for {what}.\"}}}}"
            ),
        };
        Answer { headers, body }
    }

    /// The limits, what is left of them and when they are whole again (the newest charge
    /// leaves the window), in this model's style.
    fn headers(&mut self, now: Instant) -> Vec<(&'static str, String)> {
        let (requests, tokens, input, output) = self.usage(now);
        let q = self.quota;
        let full_reset = |last: Option<Instant>| {
            last.map_or(Duration::ZERO, |at| (at + WINDOW).saturating_duration_since(now))
        };
        let log_reset = full_reset(self.log.back().map(|e| e.at));
        let wall = |d: Duration| rfc3339(WALL_AT_START + (now - self.started) + d);
        // Anthropic rounds remaining tokens to the nearest thousand.
        let thousands = |n: u64| (n + 500) / 1_000 * 1_000;
        let mut h = Vec::new();
        match self.style {
            Style::OpenAi => {
                h.push(("x-ratelimit-limit-requests", q.rpm.to_string()));
                h.push((
                    "x-ratelimit-remaining-requests",
                    q.rpm.saturating_sub(requests).to_string(),
                ));
                h.push(("x-ratelimit-reset-requests", go_duration(log_reset)));
                if let Some(tpm) = q.tpm {
                    h.push(("x-ratelimit-limit-tokens", tpm.to_string()));
                    h.push((
                        "x-ratelimit-remaining-tokens",
                        tpm.saturating_sub(tokens).to_string(),
                    ));
                    h.push(("x-ratelimit-reset-tokens", go_duration(log_reset)));
                }
            }
            Style::Anthropic => {
                h.push(("anthropic-ratelimit-requests-limit", q.rpm.to_string()));
                h.push((
                    "anthropic-ratelimit-requests-remaining",
                    q.rpm.saturating_sub(requests).to_string(),
                ));
                h.push(("anthropic-ratelimit-requests-reset", wall(log_reset)));
                if let Some(itpm) = q.itpm {
                    h.push(("anthropic-ratelimit-input-tokens-limit", itpm.to_string()));
                    h.push((
                        "anthropic-ratelimit-input-tokens-remaining",
                        thousands(itpm.saturating_sub(input)).to_string(),
                    ));
                    h.push(("anthropic-ratelimit-input-tokens-reset", wall(log_reset)));
                }
                if let Some(otpm) = q.otpm {
                    h.push(("anthropic-ratelimit-output-tokens-limit", otpm.to_string()));
                    h.push((
                        "anthropic-ratelimit-output-tokens-remaining",
                        thousands(otpm.saturating_sub(output)).to_string(),
                    ));
                    h.push(("anthropic-ratelimit-output-tokens-reset", wall(log_reset)));
                }
            }
        }
        h.push(("content-type", "application/json".into()));
        h
    }
}
