//! Manual acquire / settle with the model limiter, the Python seed's
//! `async with RateLimitContext(limiter, model, tokens)` and `release(model, tokens)` in Rust:
//! the permit is the context, `settle` is the release with the real count.
//!
//! Run: `cargo run --example model_manual` (tokio's paused clock: no real waiting).

use core::time::Duration;

use tollgate_tokio::{Error, ModelRateLimiter, RateLimitConfig};

/// Pretend to call a model; returns the tokens it really used.
async fn call_model(prompt: &str) -> u64 {
    tokio::time::sleep(Duration::from_millis(700)).await;
    prompt.len() as u64 * 40
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), Error> {
    let limiter = ModelRateLimiter::new(
        [(
            "gpt-4",
            RateLimitConfig { rpm: 3, tpm: 4_000, max_parallel_requests: 2, ..Default::default() },
        )],
        RateLimitConfig::default(),
    )?;
    let start = tokio::time::Instant::now();
    for prompt in ["hello", "summarise this", "translate that", "one more"] {
        // Reserve a generous estimate up front; it counts against TPM at once, so requests
        // running concurrently can never overrun the budget together.
        let permit = limiter.acquire("gpt-4", 1_000).await?;
        println!("[{:>13?}] admitted {prompt:?}", start.elapsed());
        let used = call_model(prompt).await;
        permit.settle(used); // the real count replaces the estimate in the window
        let stats = &limiter.stats()["gpt-4"];
        println!(
            "          used {used} tokens; window now {} tokens, {} requests",
            stats.tokens, stats.requests
        );
    }
    // A request that can never fit fails at once instead of hanging.
    match limiter.acquire("gpt-4", 5_000).await {
        Err(e) => println!("5 000 tokens: {e}"),
        Ok(_) => unreachable!("5 000 > tpm 4 000"),
    }
    // Load shedding: refuse up front if admission would take too long.
    match limiter.acquire_within("gpt-4", 100, Duration::from_secs(1)).await {
        Err(e) => println!("impatient request: {e}"),
        Ok(p) => {
            println!("impatient request admitted within its second");
            p.settle(100)
        }
    }
    Ok(())
}
