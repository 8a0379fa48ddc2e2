//! The Lua scripts, one per operation, assembled from the files in `src/lua/`: a clock (the
//! server's `TIME`, or for the parity tests a clock passed as the last argument), the shared
//! helpers, the admission rule or the GCRA bucket, and the operation's body.
//!
//! Every call appends one last argument, the test clock, so both variants take the same
//! arguments (the server-clock variant ignores it).

use std::sync::OnceLock;

use redis::Script;

const CLOCK_SERVER: &str = include_str!("lua/clock_server.lua");
const CLOCK_ARGV: &str = include_str!("lua/clock_argv.lua");
const COMMON: &str = include_str!("lua/common.lua");
const RULE: &str = include_str!("lua/rule.lua");
const QUEUE: &str = include_str!("lua/queue.lua");
const GCRA: &str = include_str!("lua/gcra.lua");

/// Which clock a script reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClockSource {
    /// `TIME`, in microseconds (production).
    Server,
    /// The last argument (parity tests).
    Argv,
}

fn assemble(clock: ClockSource, parts: &[&str]) -> Script {
    let mut text = String::from(match clock {
        ClockSource::Server => CLOCK_SERVER,
        ClockSource::Argv => CLOCK_ARGV,
    });
    text.push_str(COMMON);
    for p in parts {
        text.push_str(p);
    }
    Script::new(&text)
}

/// Every script the backend runs, built once.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) gcra_reserve: Script,
    pub(crate) gcra_cancel: Script,
    pub(crate) model_admit: Script,
    pub(crate) model_settle: Script,
    pub(crate) model_heartbeat: Script,
    pub(crate) model_dequeue: Script,
    pub(crate) model_stats: Script,
}

impl Scripts {
    /// Every one of them, to load at connect.
    pub(crate) fn all(&self) -> [&Script; 7] {
        [
            &self.gcra_reserve,
            &self.gcra_cancel,
            &self.model_admit,
            &self.model_settle,
            &self.model_heartbeat,
            &self.model_dequeue,
            &self.model_stats,
        ]
    }
}

/// The production scripts (server clock).
pub(crate) fn scripts() -> &'static Scripts {
    static SCRIPTS: OnceLock<Scripts> = OnceLock::new();
    SCRIPTS.get_or_init(|| {
        let c = ClockSource::Server;
        let model = |body: &str| assemble(c, &[RULE, QUEUE, body]);
        Scripts {
            gcra_reserve: assemble(c, &[GCRA, include_str!("lua/gcra_reserve.lua")]),
            gcra_cancel: assemble(c, &[GCRA, include_str!("lua/gcra_cancel.lua")]),
            model_admit: model(include_str!("lua/model_admit.lua")),
            model_settle: model(include_str!("lua/model_settle.lua")),
            model_heartbeat: model(include_str!("lua/model_heartbeat.lua")),
            model_dequeue: model(include_str!("lua/model_dequeue.lua")),
            model_stats: model(include_str!("lua/model_stats.lua")),
        }
    })
}

/// The rule's four operations on the test clock (see `testing.rs`).
pub(crate) fn test_ops() -> &'static Script {
    static SCRIPT: OnceLock<Script> = OnceLock::new();
    SCRIPT.get_or_init(|| assemble(ClockSource::Argv, &[RULE, include_str!("lua/test_ops.lua")]))
}
