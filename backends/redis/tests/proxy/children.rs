//! Worker processes: the test binary runs itself again, one test selected, as a child worker.
//!
//! A child is the same test binary started with `<test name> --exact`, and the environment
//! variable [`ROLE`] set to that name; the test function checks [`role_is`] first and returns at
//! once in a normal run (so it passes as an empty test there). Its stdout is read line by line on
//! a thread; the parent waits for marker lines, collects records, and can `SIGKILL` the child.
#![allow(dead_code)] // each test binary uses its own part of the support code

use core::time::Duration;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

/// The environment variable that names the child role to play.
pub const ROLE: &str = "TOLLGATE_REDIS_CHILD";

/// Whether this process was started as the child worker `name`.
pub fn role_is(name: &str) -> bool {
    std::env::var(ROLE).is_ok_and(|v| v == name)
}

/// A parameter the parent passed to a child (`TOLLGATE_REDIS_<key>`), parsed.
pub fn param<T: core::str::FromStr>(key: &str) -> T {
    let var = format!("TOLLGATE_REDIS_{key}");
    let text = std::env::var(&var).unwrap_or_else(|_| panic!("child: {var} is not set"));
    text.parse().unwrap_or_else(|_| panic!("child: {var}={text} does not parse"))
}

/// A running child worker; killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct Worker {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Worker {
    /// Starts the test `name` of this binary as a child with `params` (`key` → value, read
    /// back with [`param`]).
    pub fn spawn(name: &str, params: &[(&str, String)]) -> Worker {
        let exe = std::env::current_exe().expect("path of the test binary");
        let mut cmd = Command::new(exe);
        cmd.args([name, "--exact", "--nocapture", "--test-threads=1", "-q"])
            .env(ROLE, name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in params {
            cmd.env(format!("TOLLGATE_REDIS_{k}"), v);
        }
        let mut child = cmd.spawn().expect("spawn a child worker");
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Worker { child: Some(child), lines, seen: Vec::new() }
    }

    /// Waits up to `timeout` for a line starting with `marker`; returns it.
    pub fn wait_for(&mut self, marker: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let line = self.lines.recv_timeout(left).ok()?;
            self.seen.push(line.clone());
            if line.starts_with(marker) {
                return Some(line);
            }
        }
    }

    /// Waits up to `timeout` for the child to exit; every line it printed, and whether it
    /// exited successfully (`false` on timeout, after killing it).
    pub fn finish(mut self, timeout: Duration) -> (Vec<String>, bool) {
        let deadline = Instant::now() + timeout;
        let mut ok = false;
        if let Some(child) = self.child.as_mut() {
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        ok = status.success();
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    _ => break,
                }
            }
        }
        self.kill();
        // The reader thread ends at the child's EOF; take what it had read.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.seen.push(line);
        }
        (core::mem::take(&mut self.seen), ok)
    }

    /// Kills the child with SIGKILL (no cleanup runs in it) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}
