//! Multi-node training as a person runs it: two `rosetta serve-device` processes on 127.0.0.1
//! stand for two hosts. A run that lists both (`ws://HOST:PORT` in `model.devices`) trains as
//! one process does; a host that dies mid-run stops the run with an error that names it, and
//! once the host is back the run resumes from its last checkpoint.
#![cfg(feature = "remote")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and fixtures: a panic is how they report")]

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{config, losses, rosetta, text};
use rosetta_tests::temp_dir;

/// A `rosetta serve-device` serving this machine's CPU; killed when dropped, and gone with this
/// process however it ends (it holds the server's standard input).
struct Host {
    child: Child,
    /// `ws://127.0.0.1:PORT#0`, as the server printed it.
    address: String,
}

impl Host {
    fn start(listen: &str) -> Host {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rosetta"))
            .args(["serve-device", "--listen", listen, "--exit-when-stdin-closes"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("serve-device printed nothing").unwrap();
        let address = first.split_once(" as ").unwrap_or_else(|| panic!("unexpected first line {first:?}")).1.trim().to_string();
        // The server logs to its stdout: keep draining it, or a full pipe would stop it.
        std::thread::spawn(move || lines.for_each(drop));
        Host { child, address }
    }

    /// `127.0.0.1:PORT`, to start a server on the same address again.
    fn listen_address(&self) -> String {
        let (_, rest) = self.address.split_once("://").unwrap();
        rest.split('#').next().unwrap().to_string()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// `config`'s run on `devices`, 3 rows a step (one per device of the two-host run), a checkpoint
/// every 2 steps.
fn config_on(dir: &Path, steps: usize, devices: &[&str]) -> std::path::PathBuf {
    let path = config(dir, steps);
    let list: Vec<String> = devices.iter().map(|d| format!("{d:?}")).collect();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("path = \"model\"\n", &format!("path = \"model\"\ndevices = [{}]\n", list.join(", ")))
        .replace("checkpoint_every = 5", "checkpoint_every = 2")
        .replace("batch_size = 2", "batch_size = 3");
    std::fs::write(&path, text).unwrap();
    path
}

fn parsed(losses: &[String]) -> Vec<(usize, f64)> {
    losses
        .iter()
        .map(|l| {
            let (step, loss) = l.split_once(':').unwrap();
            (step.parse().unwrap(), loss.parse().unwrap())
        })
        .collect()
}

#[test]
fn two_hosts_train_as_one_process_and_a_lost_host_resumes() {
    let steps = 20;
    let one = temp_dir("cli-multinode-one");
    let run = rosetta(&["train", "--config", config_on(&one, steps, &["cpu"]).to_str().unwrap()]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let expected = parsed(&losses(&one.join("run")));
    assert_eq!(expected.len(), steps);

    let first = Host::start("127.0.0.1:0");
    let mut second = Host::start("127.0.0.1:0");
    let two = temp_dir("cli-multinode-two");
    // This host's CPU holds the model and the optimizer; the two servers each train a shard.
    let cfg = config_on(&two, steps, &["cpu", &first.address, &second.address]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_rosetta"))
        .args(["train", "--config", cfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while losses(&two.join("run")).len() < 3 {
        let ended = child.try_wait().unwrap();
        if ended.is_some() || Instant::now() > deadline {
            let mut child = child;
            child.kill().ok();
            panic!(
                "the two-host run {} before its third step: {}",
                if ended.is_some() { "ended" } else { "hung" },
                text(&child.wait_with_output().unwrap().stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // The second host dies mid-run.
    let listen = second.listen_address();
    let lost = second.address.clone();
    drop(second);
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("the run went on for 2 minutes after its host died: {}", text(&child.wait_with_output().unwrap().stderr));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let stopped = child.wait_with_output().unwrap();
    let stderr = text(&stopped.stderr);
    let logged = losses(&two.join("run")).len();
    assert!((3..steps).contains(&logged), "the run was not interrupted mid-way ({logged} steps logged): {stderr}");
    assert_eq!(stopped.status.code(), Some(1), "{stderr}");
    for says in [lost.as_str(), "stopped answering", "the last checkpoint is", "--resume"] {
        assert!(stderr.contains(says), "stderr does not say {says:?}: {stderr}");
    }
    assert!(!stderr.contains("panicked") && !stderr.contains("stack backtrace"), "{stderr}");

    // The host comes back on the same address; the run goes on from its last checkpoint.
    second = Host::start(&listen);
    let resumed = rosetta(&["train", "--config", cfg.to_str().unwrap(), "--resume"]);
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    let got = parsed(&losses(&two.join("run")));
    assert_eq!(got.len(), steps, "{got:?}");
    // The shards' sums meet in another order than one process's batch: equal within float
    // tolerance, not bit for bit.
    for ((s1, l1), (s2, l2)) in expected.iter().zip(&got) {
        assert_eq!(s1, s2);
        assert!((l1 - l2).abs() < 1e-4 * l1.abs(), "step {s1}: one process {l1}, two hosts {l2}");
    }
    drop((first, second));

    // A remote first device is refused before anything is written.
    let refused_dir = temp_dir("cli-multinode-refused");
    let refused = rosetta(&["train", "--config", config_on(&refused_dir, 2, &["ws://127.0.0.1:9#0", "cpu", "cpu"]).to_str().unwrap()]);
    common::assert_fails_cleanly(&refused, &["ws://127.0.0.1:9#0", "must be this host's", "devices = [\"cpu\""]);
    assert!(!refused_dir.join("run").exists(), "a refused run created its output directory");
}
