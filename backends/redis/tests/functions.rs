//! How the operations reach the server: as Redis Functions (`FCALL`), loaded at connect and
//! loaded again when the server lost them, or as scripts on a server that will not run
//! functions — with the same decisions either way.

mod support;

use tollgate::{Rate, RateLimitConfig};
use tollgate_redis::{ModelRateLimiter, RateLimiter, RedisStore};

/// Calls of each command so far, as the server counts them.
fn calls(server: &support::RedisServer, command: &str) -> u64 {
    let info = server.command(&["INFO", "commandstats"]);
    let prefix = format!("cmdstat_{command}:");
    info.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.split("calls=").nth(1)?.split(',').next()?.parse::<u64>().ok())
        .sum()
}

fn config() -> RateLimitConfig {
    RateLimitConfig { rpm: 1_000, tpm: 100_000, max_parallel_requests: 5, ..Default::default() }
}

#[tokio::test]
async fn operations_run_as_functions_and_survive_function_flush() {
    let Some(server) = support::RedisServer::start() else { return };
    let store = RedisStore::connect(&server.url()).await.unwrap();
    let bucket = RateLimiter::new(store.clone(), "tf", "b", Rate::per_minute(3), 3).unwrap();
    let model = ModelRateLimiter::new(store, "tf", [("m", config())], config()).unwrap();
    bucket.try_acquire().await.unwrap();
    model.try_acquire("m", 10).await.unwrap().settle(5).await.unwrap();
    assert_eq!(calls(&server, "fcall"), 3, "one FCALL per operation");
    assert_eq!(calls(&server, "evalsha") + calls(&server, "eval"), 0, "no scripts");
    // The server forgets the library (as after a restart without persistence): the next
    // call loads it again and goes through, and the state is untouched.
    assert!(server.command(&["FUNCTION", "FLUSH"]).contains("OK"));
    bucket.try_acquire().await.unwrap();
    model.try_acquire("m", 10).await.unwrap().settle(5).await.unwrap();
    bucket.try_acquire().await.unwrap();
    assert!(bucket.try_acquire().await.is_err(), "the fourth of a burst of 3 is refused");
    let stats = model.stats().await.unwrap();
    assert_eq!(stats["m"].requests.used, 2, "{stats:?}");
    assert_eq!(stats["m"].tokens.used, 10, "{stats:?}");
}

#[tokio::test]
async fn a_server_that_refuses_functions_gets_scripts() {
    let Some(server) = support::RedisServer::start() else { return };
    // A user that may do everything but functions (as on a server older than 7.0).
    let acl = [
        "ACL",
        "SETUSER",
        "nofn",
        "on",
        ">pw",
        "~*",
        "&*",
        "+@all",
        "-function",
        "-fcall",
        "-fcall_ro",
    ];
    assert!(server.command(&acl).contains("OK"));
    let url = format!("redis://nofn:pw@127.0.0.1:{}/", server.port());
    let store = RedisStore::connect(&url).await.unwrap();
    let bucket = RateLimiter::new(store.clone(), "tf", "b", Rate::per_minute(2), 2).unwrap();
    let model = ModelRateLimiter::new(store, "tf", [("m", config())], config()).unwrap();
    bucket.try_acquire().await.unwrap();
    bucket.try_acquire().await.unwrap();
    assert!(bucket.try_acquire().await.is_err(), "the third of a burst of 2 is refused");
    model.try_acquire("m", 10).await.unwrap().settle(7).await.unwrap();
    let stats = model.stats().await.unwrap();
    assert_eq!(stats["m"].tokens.used, 7, "{stats:?}");
    assert_eq!(calls(&server, "fcall"), 0);
    assert!(calls(&server, "evalsha") >= 5, "every operation ran as a script");
}

#[tokio::test]
async fn each_config_keeps_its_own_limits_in_the_loaded_library() {
    // The library keeps parsed limits between calls (by config fingerprint): two models with
    // the same shape of config but other numbers, used in turns, must not share them.
    let Some(server) = support::RedisServer::start() else { return };
    let store = RedisStore::connect(&server.url()).await.unwrap();
    let one = RateLimitConfig { rpm: 1, ..config() };
    let three = RateLimitConfig { rpm: 3, ..config() };
    let model =
        ModelRateLimiter::new(store, "tf", [("one", one), ("three", three)], config()).unwrap();
    let mut admitted = (0, 0);
    for _ in 0..4 {
        if let Ok(p) = model.try_acquire("one", 1).await {
            admitted.0 += 1;
            p.settle(1).await.unwrap();
        }
        if let Ok(p) = model.try_acquire("three", 1).await {
            admitted.1 += 1;
            p.settle(1).await.unwrap();
        }
    }
    assert_eq!(admitted, (1, 3), "each model within its own rpm");
    assert!(calls(&server, "fcall") > 0);
}
