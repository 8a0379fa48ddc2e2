//! A `RateLimitLayer` in front of a bare tower `Service`: clones of the service (one per
//! connection, say) share one budget. Runs on tokio's paused clock, so it finishes at once.
//!
//! Run with `cargo run -p tollgate-tokio --example tower_layer --features tower`.

use std::convert::Infallible;

use tokio::time::Instant;
use tollgate_tokio::{Rate, RateLimitLayer};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let service = ServiceBuilder::new().layer(RateLimitLayer::new(Rate::per_second(2), 2)).service(
        service_fn(|name: String| async move { Ok::<_, Infallible>(format!("hello, {name}")) }),
    );
    let start = Instant::now();
    let connections: Vec<_> = ["ada", "bob", "cy", "dee", "eve"]
        .into_iter()
        .map(|name| {
            let mut connection = service.clone();
            tokio::spawn(async move {
                let ready = connection.ready().await?;
                let reply = ready.call(name.to_string()).await?;
                println!("{:>5} ms  {reply}", start.elapsed().as_millis());
                Ok::<_, Infallible>(())
            })
        })
        .collect();
    for connection in connections {
        connection.await.expect("task panicked").expect("infallible");
    }
}
