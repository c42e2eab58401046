//! Drivers outside the host: the templates `tsohost new-driver` writes
//! (Rust, Python, JavaScript, C, Zig; examples/drivers/<lang>) and the
//! replicated JavaScript driver (alone here; its cluster runs in
//! tests/cluster.rs). Each is built with its own script (which installs
//! its toolchain from the package registries), checked against the
//! contract, served by the real binary, and survives a kill -9 and restart
//! without going backwards.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::{BIN, Server, metrics_text, status, timestamp};

/// The last line of the report on a driver that keeps every rule: the one
/// the built-in file driver gets (`all N rules hold`, N being however many
/// rules check-driver has).
fn all_rules_hold() -> String {
    let out = Command::new(BIN)
        .args(["check-driver", "file"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "check-driver file:\n{report}");
    report.lines().last().unwrap().to_string()
}

/// What a driver's WIT version shows on a node serving it.
enum Wit {
    /// The current contract: the driver's `stats` reach `/metrics`. The
    /// templates report `high_water_writes`.
    Current { name: &'static str },
    /// Built against the frozen WIT 0.1.0: loaded as such, with no
    /// statistics of its own (0.2's `stats` does not exist for it).
    Frozen,
}

/// `tsohost new-driver --lang LANG NAME`, then the project's `build.sh`,
/// untouched: the component it built. The project is made afresh at the
/// same place every run (a Python virtualenv only works where it was made)
/// and gets back the `target/` of the last run, where build.sh installed
/// the toolchain, so that a warm run does not download it again.
fn new_driver(lang: &str, name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("templates");
    let project = root.join(name);
    let tools = root.join(format!("{name}.target"));
    std::fs::create_dir_all(&root).unwrap();
    if project.join("target").exists() {
        std::fs::rename(project.join("target"), &tools).unwrap();
    }
    if project.exists() {
        std::fs::remove_dir_all(&project).unwrap();
    }
    let out = Command::new(BIN)
        .args(["new-driver", "--lang", lang, name, "--dir"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(out.status.success(), "new-driver --lang {lang}: {out:?}");
    if tools.exists() {
        std::fs::rename(&tools, project.join("target")).unwrap();
    }
    let out = Command::new(project.join("build.sh")).output().unwrap();
    assert!(
        out.status.success(),
        "{lang}: build.sh of a new project failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let wasm = project.join("out").join(format!("{name}.wasm"));
    assert!(wasm.exists(), "{} was not built", wasm.display());
    wasm
}

async fn template_keeps_the_contract(lang: &str) {
    let name: &'static str = Box::leak(format!("my-{lang}_driver").into_boxed_str());
    let wasm = new_driver(lang, name);
    keeps_the_contract(lang, &wasm, Wit::Current { name }).await;
}

async fn keeps_the_contract(lang: &str, wasm: &Path, wit: Wit) {
    let wasm = wasm.to_str().unwrap();
    let out = Command::new(BIN)
        .args(["check-driver", wasm])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{lang}: check-driver failed:\n{report}"
    );
    assert_eq!(report.lines().last(), Some(&*all_rules_hold()), "{report}");

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--driver", wasm]);
    server.wait_ready().await;
    let mut last = 0;
    for _ in 0..5 {
        let ts = timestamp(&server.url).await;
        assert!(ts > last);
        last = ts;
    }
    let metrics = metrics_text(&server.url).await;
    let version = &status(&server.url).await.driver.wit_version;
    match wit {
        Wit::Current { name } => {
            assert_eq!(version, tsohost::driver::bindings::WIT_VERSION);
            // Serving timestamps wrote the high water at least once.
            let writes = format!("tsohost_driver_high_water_writes_total{{driver=\"{name}\"}} ");
            let value = metrics.lines().find_map(|l| l.strip_prefix(&writes));
            assert!(
                value.is_some_and(|v| v.parse::<u64>().unwrap() >= 1),
                "{lang}: no high_water_writes counter:\n{metrics}"
            );
        }
        Wit::Frozen => {
            assert_eq!(version, "0.1.0");
            let driver_stats = metrics
                .lines()
                .filter(|l| l.starts_with("tsohost_driver_") && l.contains("{driver="));
            assert!(
                metrics.contains("wit_version=\"0.1.0\"") && driver_stats.count() == 0,
                "{lang}: {metrics}"
            );
        }
    }
    let server = server.crash_and_restart();
    server.wait_ready().await;
    assert!(
        timestamp(&server.url).await > last,
        "{lang}: backwards after a restart"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_template() {
    template_keeps_the_contract("rust").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn python_template() {
    template_keeps_the_contract("python").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn javascript_template() {
    template_keeps_the_contract("javascript").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn c_template() {
    template_keeps_the_contract("c").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn zig_template() {
    template_keeps_the_contract("zig").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn javascript_paxos() {
    let built = support::javascript_paxos();
    keeps_the_contract("javascript-paxos", Path::new(built.driver), Wit::Frozen).await;
}

/// The gate has teeth for a driver outside Rust too: javascript-paxos with
/// its lease broken on purpose (each mutation one edit of driver.js, as its
/// README lists) is refused by check-driver's simulated cluster.
#[tokio::test(flavor = "multi_thread")]
async fn javascript_paxos_mutations_are_refused() {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/drivers/javascript-paxos");
    // The build installs the toolchain the mutants are built with.
    support::javascript_paxos();
    let source = std::fs::read_to_string(dir.join("driver.js")).unwrap();
    let mutations = [
        // The voters' refusal window is gone: a follower cut off from the
        // leader is elected through voters that still acknowledge it.
        (
            "mutant-no-gate",
            "return now < this.gateUntil && !sameLeader;",
            "return false && sameLeader;",
        ),
        // A lease longer than the refusal window.
        (
            "mutant-long-lease",
            "this.L = Math.floor(settings.E / 2);",
            "this.L = 2 * settings.E;",
        ),
    ];
    for (name, from, to) in mutations {
        assert_eq!(source.matches(from).count(), 1, "{name}: driver.js changed");
        let mutated = dir.join(format!("target/{name}.js"));
        std::fs::write(&mutated, source.replace(from, to)).unwrap();
        let out = Command::new("bash")
            .arg("-c")
            .arg(r#". "$1/../lib.sh" && componentize_js "$1" "$2" "$1/../../../wit/0.1.0" "$3""#)
            .args([
                "build",
                dir.to_str().unwrap(),
                name,
                mutated.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let wasm = dir.join(format!("out/{name}.wasm"));
        let out = Command::new(BIN)
            .args(["check-driver", wasm.to_str().unwrap()])
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success(),
            "{name} passed check-driver:\n{report}"
        );
        assert!(
            report.contains("FAIL  keeps the contract in a simulated cluster"),
            "{name} was refused, but not by the cluster rule:\n{report}"
        );
    }
}
