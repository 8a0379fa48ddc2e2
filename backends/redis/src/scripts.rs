//! The Lua code, one operation per call, assembled from the files in `src/lua/`: a clock (the
//! server's `TIME`, or for the parity tests a clock passed as the last argument), the shared
//! helpers, the admission rule or the GCRA bucket, and the operation's body.
//!
//! Each operation exists in two forms from the same text: a function of one Redis Functions
//! library (`FUNCTION LOAD` once, then `FCALL`; Redis 7.0+), used whenever the server has
//! functions, and a script (`EVALSHA`) for servers without them. The library defines its
//! helpers once, at load; a script defines them again on every call, which cost about 3 µs
//! of the server's one thread per model call (measured; the whole admission is about 25 µs).
//!
//! Every call appends one last argument, the test clock, so both clocks take the same
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

/// What an operation needs before its body: the model rule and queue, or the bucket.
#[derive(Debug, Clone, Copy)]
enum Needs {
    Model,
    Bucket,
}

impl Needs {
    /// The helpers' files.
    fn parts(self) -> &'static [&'static str] {
        match self {
            Needs::Model => &[RULE, QUEUE],
            Needs::Bucket => &[GCRA],
        }
    }

    /// What every call runs first: reading its arguments into the helpers' context.
    fn setup(self) -> &'static str {
        match self {
            Needs::Model => "rule_setup()\nqueue_setup()\n",
            Needs::Bucket => "gcra_setup()\n",
        }
    }
}

fn clock_text(clock: ClockSource) -> &'static str {
    match clock {
        ClockSource::Server => CLOCK_SERVER,
        ClockSource::Argv => CLOCK_ARGV,
    }
}

fn assemble(clock: ClockSource, needs: Needs, body: &str) -> Script {
    let mut text = String::from(clock_text(clock));
    text.push_str(COMMON);
    for p in needs.parts() {
        text.push_str(p);
    }
    text.push_str(needs.setup());
    text.push_str(body);
    Script::new(&text)
}

/// One operation: its function in the library and the same code as a script.
#[derive(Debug)]
pub(crate) struct Op {
    /// The name to `FCALL` (unique to this library's text).
    pub(crate) function: String,
    /// The fallback for servers without functions.
    pub(crate) script: Script,
}

/// The production library: its text (for `FUNCTION LOAD`) and name.
#[derive(Debug)]
pub(crate) struct Library {
    pub(crate) text: String,
    pub(crate) name: String,
}

/// Every operation the backend runs, built once.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) gcra_reserve: Op,
    pub(crate) gcra_cancel: Op,
    pub(crate) model_admit: Op,
    pub(crate) model_batch: Op,
    pub(crate) model_heartbeat: Op,
    pub(crate) model_dequeue: Op,
    pub(crate) model_stats: Op,
    pub(crate) model_feedback: Op,
    pub(crate) library: Library,
}

impl Scripts {
    /// Every one of them, to load at connect when the server has no functions.
    pub(crate) fn all(&self) -> [&Op; 8] {
        [
            &self.gcra_reserve,
            &self.gcra_cancel,
            &self.model_admit,
            &self.model_batch,
            &self.model_heartbeat,
            &self.model_dequeue,
            &self.model_stats,
            &self.model_feedback,
        ]
    }
}

/// The operations: (short name, what they need, body).
const OPS: [(&str, Needs, &str); 8] = [
    ("gcra_reserve", Needs::Bucket, include_str!("lua/gcra_reserve.lua")),
    ("gcra_cancel", Needs::Bucket, include_str!("lua/gcra_cancel.lua")),
    ("model_admit", Needs::Model, include_str!("lua/model_admit.lua")),
    ("model_batch", Needs::Model, include_str!("lua/model_batch.lua")),
    ("model_heartbeat", Needs::Model, include_str!("lua/model_heartbeat.lua")),
    ("model_dequeue", Needs::Model, include_str!("lua/model_dequeue.lua")),
    ("model_stats", Needs::Model, include_str!("lua/model_stats.lua")),
    ("model_feedback", Needs::Model, include_str!("lua/model_feedback.lua")),
];

/// The library's text with its functions under `prefix`: every helper defined once, and each
/// operation a function that takes its keys and arguments as the script form's `KEYS` and
/// `ARGV` (upvalues of the helpers, set per call; Redis runs one call at a time).
fn library_text(prefix: &str) -> String {
    let mut text = format!("#!lua name={prefix}\nlocal KEYS, ARGV\n");
    text.push_str(CLOCK_SERVER);
    text.push_str(COMMON);
    for p in [RULE, QUEUE, GCRA] {
        text.push_str(p);
    }
    for (name, needs, body) in OPS {
        text.push_str(&format!(
            "redis.register_function('{prefix}_{name}', function(keys, args)\nKEYS, ARGV = keys, args\n{}{body}\nend)\n",
            needs.setup()
        ));
    }
    text
}

/// The production operations (server clock).
pub(crate) fn scripts() -> &'static Scripts {
    static SCRIPTS: OnceLock<Scripts> = OnceLock::new();
    SCRIPTS.get_or_init(|| {
        // Named by a digest of its text, so two versions of this crate on one server never
        // replace each other's library.
        let digest = sha1_smol::Sha1::from(library_text("tollgate").as_bytes()).digest();
        let name = format!("tollgate_{}", &digest.to_string()[..12]);
        let op = |i: usize| {
            let (short, needs, body) = OPS[i];
            Op {
                function: format!("{name}_{short}"),
                script: assemble(ClockSource::Server, needs, body),
            }
        };
        Scripts {
            gcra_reserve: op(0),
            gcra_cancel: op(1),
            model_admit: op(2),
            model_batch: op(3),
            model_heartbeat: op(4),
            model_dequeue: op(5),
            model_stats: op(6),
            model_feedback: op(7),
            library: Library { text: library_text(&name), name },
        }
    })
}

/// The bucket's two operations (reserve, cancel) on the test clock (see `testing.rs`).
pub(crate) fn test_bucket_ops() -> &'static [Script; 2] {
    static SCRIPTS: OnceLock<[Script; 2]> = OnceLock::new();
    SCRIPTS.get_or_init(|| {
        [OPS[0].2, OPS[1].2].map(|body| assemble(ClockSource::Argv, Needs::Bucket, body))
    })
}

/// The rule's four operations on the test clock (see `testing.rs`).
/// The rule's test operations as the one function of a library on the test clock (name,
/// text), for the parity tests to run them as production runs its operations: the helpers'
/// upvalues (the parsed configs, the parsed header feedback) outlive the call.
pub(crate) fn test_ops_library() -> &'static (String, String) {
    static LIBRARY: OnceLock<(String, String)> = OnceLock::new();
    LIBRARY.get_or_init(|| {
        let name = "tollgate_test_ops".to_owned();
        let mut text = format!("#!lua name={name}\nlocal KEYS, ARGV\n");
        text.push_str(CLOCK_ARGV);
        text.push_str(COMMON);
        for p in Needs::Model.parts() {
            text.push_str(p);
        }
        text.push_str(&format!(
            "redis.register_function('{name}', function(keys, args)\nKEYS, ARGV = keys, args\n{}{}\nend)\n",
            Needs::Model.setup(),
            include_str!("lua/test_ops.lua")
        ));
        (name, text)
    })
}

pub(crate) fn test_ops() -> &'static Script {
    static SCRIPT: OnceLock<Script> = OnceLock::new();
    SCRIPT
        .get_or_init(|| assemble(ClockSource::Argv, Needs::Model, include_str!("lua/test_ops.lua")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_a_function_of_the_library() {
        let s = scripts();
        assert!(s.library.text.starts_with(&format!("#!lua name={}\n", s.library.name)));
        for op in s.all() {
            let registered = format!("redis.register_function('{}',", op.function);
            assert_eq!(s.library.text.matches(&registered).count(), 1, "{}", op.function);
        }
    }
}
