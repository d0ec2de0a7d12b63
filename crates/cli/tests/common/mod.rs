//! Running the `rosetta` binary from the CLI tests.
#![allow(dead_code)]

use std::process::{Command, Output};

pub fn rosetta(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rosetta")).args(args).output().expect("run rosetta")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Exit code 1, an `error: ` line mentioning every string of `mentions`, and no panic.
pub fn assert_fails_cleanly(output: &Output, mentions: &[&str]) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "expected exit code 1, stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panicked: {stderr}");
    assert!(stderr.lines().any(|l| l.starts_with("error: ")), "no `error: ` line in stderr: {stderr}");
    for m in mentions {
        assert!(stderr.contains(m), "stderr {stderr:?} does not mention {m:?}");
    }
}
