//! The `rhaibot` binary as a user runs it: a bot directory with scripts, and a running process
//! whose log can be waited on.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};

/// A directory holding `scripts/` (and whatever a test adds), removed when dropped.
pub struct BotDir {
    dir: tempfile::TempDir,
}

impl BotDir {
    /// A directory with these scripts in `scripts/`.
    pub fn new(scripts: &[(&str, &str)]) -> BotDir {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("scripts")).expect("scripts dir");
        for (name, source) in scripts {
            std::fs::write(dir.path().join("scripts").join(name), source).expect("write script");
        }
        BotDir { dir }
    }

    /// Writes a file relative to the directory.
    pub fn file(self, rel: &str, text: &str) -> BotDir {
        std::fs::write(self.dir.path().join(rel), text).expect("write file");
        self
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `rhaibot ARGS` run in the directory, waiting for it to exit.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        command(self.path(), args).stdin(Stdio::null()).output().expect("run rhaibot")
    }

    /// Starts `rhaibot ARGS` in the directory with piped stdin, stdout and stderr.
    pub fn spawn(&self, args: &[&str]) -> Running {
        let mut child = command(self.path(), args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rhaibot");
        let stderr = BufReader::new(child.stderr.take().expect("stderr"));
        Running { child: Some(child), stderr }
    }
}

fn command(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(super::rhaibot_bin());
    c.args(args).current_dir(dir).env_remove("RHAIBOT_CONFIG").env_remove("RUST_LOG");
    c
}

/// A running `rhaibot`; killed if still running when dropped.
pub struct Running {
    child: Option<Child>,
    stderr: BufReader<ChildStderr>,
}

impl Running {
    /// Reads the log until a line contains `needle`; fails if the process exits first.
    pub fn wait_for_log(&mut self, needle: &str) {
        let mut line = String::new();
        while !line.contains(needle) {
            line.clear();
            let n = self.stderr.read_line(&mut line).expect("read the log");
            assert!(n > 0, "rhaibot exited before logging {needle:?}");
        }
    }

    /// Types a line into the console.
    pub fn type_line(&mut self, text: &str) {
        let stdin = self.child.as_mut().and_then(|c| c.stdin.as_mut()).expect("stdin");
        stdin.write_all(format!("{text}\n").as_bytes()).and_then(|_| stdin.flush()).expect("write stdin");
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the process to exit; returns its status and stdout.
    pub fn wait(mut self) -> (std::process::ExitStatus, String) {
        let child = self.child.take().expect("running");
        let out = child.wait_with_output().expect("wait for rhaibot");
        (out.status, String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}
