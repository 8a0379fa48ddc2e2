//! A `RateLimitLayer` in front of a bare tower `Service`: clones of the service (one per
//! connection, say) share one budget. First the waiting policy (requests wait in line for their
//! token), then the refusing one an HTTP server would use (a refusal says when to retry: the
//! 429's `Retry-After`). Runs on tokio's paused clock, so it finishes at once.
//!
//! Run with `cargo run -p tollgate-tokio --example tower_layer --features tower`.

use core::convert::Infallible;

use tokio::time::Instant;
use tollgate_tokio::{Rate, RateLimitLayer, RateLimited};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), BoxError> {
    let hello =
        service_fn(|name: String| async move { Ok::<_, Infallible>(format!("hello, {name}")) });
    let names = ["ada", "bob", "cy", "dee", "eve"];

    println!("waiting (2/s, burst 2):");
    let service =
        ServiceBuilder::new().layer(RateLimitLayer::new(Rate::per_second(2), 2)).service(hello);
    let start = Instant::now();
    let connections: Vec<_> = names
        .into_iter()
        .map(|name| {
            let mut connection = service.clone();
            tokio::spawn(async move {
                let reply = connection.ready().await?.call(name.to_string()).await?;
                println!("{:>5} ms  {reply}", start.elapsed().as_millis());
                Ok::<_, BoxError>(())
            })
        })
        .collect();
    for connection in connections {
        connection.await??;
    }

    println!("refusing (2/s, burst 2):");
    let service = ServiceBuilder::new()
        .layer(RateLimitLayer::new(Rate::per_second(2), 2).refuse_when_limited())
        .service(hello);
    let start = Instant::now();
    for name in names {
        let mut connection = service.clone();
        match connection.ready().await?.call(name.to_string()).await {
            Ok(reply) => println!("{:>5} ms  {reply}", start.elapsed().as_millis()),
            Err(error) => match error.downcast_ref::<RateLimited>() {
                // What an HTTP server would answer with 429 Too Many Requests.
                Some(limited) => println!(
                    "{:>5} ms  {name}: 429, Retry-After: {:?}",
                    start.elapsed().as_millis(),
                    limited.retry_after_secs()
                ),
                None => return Err(error),
            },
        }
    }
    Ok(())
}
