//! `tsohost serve --config FILE`: the real binary reading real files.
//! Settings from the file take effect; `TSOHOST_*` variables beat the file
//! and flags beat both; a bad file (unknown key, wrong type, bad value,
//! broken TOML, missing) stops the node before it starts, with a message
//! naming the file and the key.

mod support;

use std::io::BufReader;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{BIN, get, json, ready_within, timestamp};
use tsohost::tools::cluster::listening_url;

/// `tsohost serve ARGS` with `env` added to an environment free of other
/// `TSOHOST_*` variables; killed when dropped.
struct Node {
    child: Child,
    url: String,
}

impl Node {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Node {
        let mut child = command(args, env)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = listening_url(&mut BufReader::new(child.stdout.take().unwrap()))
            .unwrap_or_else(|e| panic!("{e}"));
        Node { child, url }
    }

    /// Its `/v1/status` once it serves (a node listens before it leads).
    async fn status(&self) -> serde_json::Value {
        assert!(
            ready_within(&self.url, Duration::from_secs(30)).await,
            "{} never became ready",
            self.url
        );
        json(&get(&self.url, "/v1/status").await.unwrap())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve").args(args).stdin(Stdio::null());
    for (name, _) in std::env::vars() {
        if name.starts_with("TSOHOST_") {
            cmd.env_remove(name);
        }
    }
    cmd.envs(env.iter().copied());
    cmd
}

fn write(dir: &Path, text: &str) -> String {
    let path = dir.join("tsohost.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_file_sets_what_the_flags_would() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("from-the-file");
    let file = write(
        dir.path(),
        &format!(
            "# a node configured by file alone\n\
             listen = \"127.0.0.1:0\"\n\
             data-dir = \"{}\"\n\
             node-id = 7\n\
             window = \"750ms\"\n\
             max-connections = 64\n\
             driver = \"file\"\n\
             driver-option = []\n\
             log-format = \"json\"\n",
            data.display()
        ),
    );
    let node = Node::start(&["--config", &file], &[]);
    let status = node.status().await;
    assert_eq!(status["node_id"], 7, "{status}");
    assert_eq!(status["window_ms"], 750, "{status}");
    assert!(timestamp(&node.url).await > 0);
    assert!(
        data.exists(),
        "the node did not keep its state in the file's data-dir {}",
        data.display()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_environment_beats_the_file_and_a_flag_beats_both() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = write(
        dir.path(),
        &format!(
            "listen = \"127.0.0.1:0\"\ndata-dir = \"{}\"\nnode-id = 7\nwindow = \"750ms\"\n",
            data.display()
        ),
    );
    let config = ["--config", file.as_str()];
    let env_node = [("TSOHOST_NODE_ID", "8")];

    let node = Node::start(&config, &env_node);
    let status = node.status().await;
    assert_eq!(
        status["node_id"], 8,
        "the environment should beat the file: {status}"
    );
    // What the environment does not set still comes from the file.
    assert_eq!(status["window_ms"], 750, "{status}");
    drop(node);

    let node = Node::start(&[&config[..], &["--node-id", "9"]].concat(), &env_node);
    let status = node.status().await;
    assert_eq!(status["node_id"], 9, "a flag should beat both: {status}");
    drop(node);

    // The file itself may come from the environment.
    let node = Node::start(&[], &[("TSOHOST_CONFIG", file.as_str())]);
    assert_eq!(node.status().await["node_id"], 7);
}

/// `serve` with `text` as its file (or a file that does not exist): it
/// must exit 2 before listening, its message naming every `expected`.
fn refused(dir: &Path, text: Option<&str>, flags: &[&str], expected: &[&str]) {
    let file = match text {
        Some(text) => write(dir, text),
        None => dir.join("missing.toml").to_str().unwrap().to_string(),
    };
    let data = dir.join("data");
    let mut args = vec!["--config", &file, "--data-dir", data.to_str().unwrap()];
    args.extend_from_slice(flags);
    // A node that starts after all would never exit: give it 30 s.
    let mut child = command(&args, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let what = format!("{text:?} {flags:?}");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{what}: {}\n{stderr}",
        out.status
    );
    assert!(out.stdout.is_empty(), "{what}: it started: {stderr}");
    assert!(
        stderr.contains(&file),
        "{what}: the message does not name {file}: {stderr}"
    );
    for word in expected {
        assert!(stderr.contains(word), "{what}: no {word:?} in: {stderr}");
    }
    assert!(!data.exists(), "{what}: it touched the data directory");
}

const LISTEN: &str = "listen = \"127.0.0.1:0\"\n";

#[test]
fn an_unknown_key_is_refused_with_the_nearest_known_one() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    refused(
        dir,
        Some(&format!("{LISTEN}data_dir = \"x\"\n")),
        &[],
        &[":2:", "unknown key `data_dir`", "did you mean `data-dir`?"],
    );
    refused(
        dir,
        Some("[serve]\nnode-id = 2\n"),
        &[],
        &["unknown key `serve`"],
    );
    refused(
        dir,
        Some("config = \"other.toml\"\n"),
        &[],
        &["unknown key `config`"],
    );
}

#[test]
fn a_value_of_the_wrong_type_is_refused_with_the_type_expected() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    refused(
        dir,
        Some(&format!("{LISTEN}node-id = \"seven\"\n")),
        &[],
        &[":2:", "`node-id`", "must be an integer, not a string"],
    );
    refused(
        dir,
        Some("bootstrap = \"yes\"\n"),
        &[],
        &["`bootstrap`", "must be a boolean"],
    );
    refused(
        dir,
        Some("driver-option = \"a=b\"\n"),
        &[],
        &["`driver-option`", "must be an array of strings"],
    );
    refused(
        dir,
        Some("window = 3\n"),
        &[],
        &["`window`", "must be a string, not an integer"],
    );
    // The whole file is checked, even a key a flag overrides.
    refused(
        dir,
        Some("node-id = \"seven\"\n"),
        &["--node-id", "3"],
        &["`node-id`", "must be an integer"],
    );
}

#[test]
fn a_value_its_flag_would_refuse_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    refused(
        dir,
        Some("window = \"3 parsecs\"\n"),
        &[],
        &["`window`", "3 parsecs", "not a duration"],
    );
    refused(
        dir,
        Some("log-format = \"yaml\"\n"),
        &[],
        &["`log-format`", "text, json"],
    );
    // A file's value counts as its flag in clap's checks between flags.
    refused(
        dir,
        Some("tls-cert = \"cert.pem\"\n"),
        &[],
        &["--tls-key", "passed as the flags they name"],
    );
}

#[test]
fn a_missing_or_broken_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    refused(
        dir,
        None,
        &[],
        &["cannot read the configuration file", "No such file"],
    );
    refused(
        dir,
        Some("listen = [\n"),
        &[],
        &["not valid TOML", "line 1"],
    );
}
