//! The package `./x dist` makes (host/dist/dist.sh, run on the binary under
//! test): unpacked into an empty directory, it holds what INSTALL says, and
//! its binary serves from there; `systemd-analyze` (Debian's systemd,
//! `SYSTEMD_ANALYZE`, fetched by `./x test` when missing) accepts its unit,
//! hardening included.

mod support;

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::{BIN, ready_within, succeeded, timestamp};
use tsohost::tools::cluster::listening_url;

/// `host/dist/dist.sh` packaging [`BIN`] into `out`: the tarball.
fn package(out: &Path) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/dist.sh");
    let output = Command::new(&script)
        .env("TSOHOST_BIN", BIN)
        .env("TSOHOST_DIST_DIR", out)
        .output()
        .unwrap();
    let stdout = succeeded(&output);
    PathBuf::from(
        stdout
            .lines()
            .last()
            .expect("dist.sh prints the tarball's path"),
    )
}

/// The tarball unpacked into the empty directory `into`: its one top-level
/// directory.
fn unpack(tarball: &Path, into: &Path) -> PathBuf {
    succeeded(
        &Command::new("tar")
            .arg("-xzf")
            .arg(tarball)
            .arg("-C")
            .arg(into)
            .output()
            .unwrap(),
    );
    let entries: Vec<PathBuf> = std::fs::read_dir(into)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "one top-level directory: {entries:?}");
    entries.into_iter().next().unwrap()
}

fn systemd_analyze() -> String {
    std::env::var("SYSTEMD_ANALYZE")
        .ok()
        .filter(|path| !path.is_empty())
        .unwrap_or_else(|| "systemd-analyze".to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_package_unpacks_and_serves_from_an_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let tarball = package(&out);
    let name = tarball.file_name().unwrap().to_str().unwrap();
    let prefix = format!("tsohost-{}-", env!("CARGO_PKG_VERSION"));
    assert!(
        name.starts_with(&prefix) && name.ends_with("-linux-gnu.tar.gz"),
        "{name} is not tsohost-VERSION-TARGET.tar.gz"
    );

    let empty = dir.path().join("unpacked");
    std::fs::create_dir(&empty).unwrap();
    let root = unpack(&tarball, &empty);
    assert_eq!(
        root.file_name().unwrap().to_str().unwrap(),
        name.trim_end_matches(".tar.gz")
    );
    let mut files: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["INSTALL", "tsohost", "tsohost.service", "tsohost.toml"]
    );

    // INSTALL names what the binary links, as the binary says it.
    let install = std::fs::read_to_string(root.join("INSTALL")).unwrap();
    assert!(!install.contains('@'), "a placeholder is left:\n{install}");
    let readelf = succeeded(
        &Command::new("readelf")
            .arg("-d")
            .arg(root.join("tsohost"))
            .output()
            .unwrap(),
    );
    let needed: Vec<&str> = readelf
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.strip_suffix(']'))
        .collect();
    assert!(
        needed.iter().any(|l| l.starts_with("librocksdb.so")),
        "{needed:?}"
    );
    for lib in &needed {
        assert!(
            install.contains(lib),
            "INSTALL does not name {lib}:\n{install}"
        );
    }

    // Serve from the unpacked directory: its binary, its configuration
    // file (with the data directory and address of a test), the state
    // under it.
    let mut child = Command::new(root.join("tsohost"))
        .current_dir(&root)
        .args(["serve", "--config", "tsohost.toml", "--data-dir", "data"])
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("TSOHOST_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = match listening_url(&mut BufReader::new(child.stdout.take().unwrap())) {
        Ok(url) => url,
        Err(e) => {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the unpacked binary did not serve: {e}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    let mut last = 0;
    assert!(
        ready_within(&url, std::time::Duration::from_secs(30)).await,
        "{url} never became ready"
    );
    for _ in 0..3 {
        let ts = timestamp(&url).await;
        assert!(ts > last);
        last = ts;
    }
    // Its own client, too.
    let ts: u64 = succeeded(
        &Command::new(root.join("tsohost"))
            .args(["ts", "--url", &url])
            .env_remove("TSOHOST_URL")
            .output()
            .unwrap(),
    )
    .trim()
    .parse()
    .unwrap();
    assert!(ts > last);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        root.join("data").is_dir(),
        "no state under the unpacked directory"
    );
}

#[test]
fn systemd_accepts_the_unit_and_rates_it_hardened() {
    let dir = tempfile::tempdir().unwrap();
    let unpacked = dir.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    let root = unpack(&package(&dir.path().join("out")), &unpacked);
    // `verify` wants ExecStart's binary to exist: point it at the unpacked
    // one, as the unit would be at /usr/local/bin once installed.
    let unit = std::fs::read_to_string(root.join("tsohost.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/tsohost serve --config /etc/tsohost/tsohost.toml")
    );
    let unit = unit.replace(
        "/usr/local/bin/tsohost",
        root.join("tsohost").to_str().unwrap(),
    );
    let checked = dir.path().join("tsohost.service");
    std::fs::write(&checked, unit).unwrap();

    let run = |args: &[&str]| {
        Command::new(systemd_analyze())
            .args(args)
            .arg(&checked)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} ({e}): install Debian's systemd package, or run ./x test, \
                     which fetches it (SYSTEMD_ANALYZE)",
                    systemd_analyze()
                )
            })
    };
    // Unknown or malformed settings are warnings with exit status 0: none
    // may be printed.
    let verify = run(&["verify", "--man=no"]);
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        verify.status
    );
    // Exposure 0.0 (locked down) to 10.0 (unsafe), in tenths: at most 2.5
    // ("OK"); the unit rates 1.5.
    let security = run(&["security", "--offline=yes", "--threshold=25"]);
    assert!(
        security.status.success(),
        "systemd-analyze security rates the unit above 2.5:\n{}{}",
        String::from_utf8_lossy(&security.stdout),
        String::from_utf8_lossy(&security.stderr)
    );
}
