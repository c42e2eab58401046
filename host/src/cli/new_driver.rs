//! `tsohost new-driver --lang LANG NAME`: write a small, working
//! single-node driver project to start from (docs/writing-a-driver.md,
//! "Starting a driver").
//!
//! The templates are the example drivers of this repository,
//! `examples/drivers/<lang>/`, compiled into the binary: what a new project
//! holds is what `./x test` builds and checks, never a second copy that
//! could drift. Two things are links in the repository and real files in a
//! project: `wit/driver.wit` (the contract this host's own drivers
//! implement) and `lib.sh` (the shell helpers the build scripts share; not
//! in Rust, whose build is cargo's).
//!
//! In every file, the template's driver name `<lang>-file` is replaced by
//! the new name: it names the driver (`info().name`, hence its storage
//! namespace), its component (`out/<name>.wasm`) and, in Rust, its crate.
//! Nothing else in a template spells that string.

use anyhow::{Context, bail};
use clap::ValueEnum;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct NewDriverArgs {
    /// The language of the driver.
    #[arg(long, value_enum)]
    lang: Lang,
    /// The driver's name: its storage namespace, its component's file name
    /// and the project's directory. A lowercase letter, then up to 63 of
    /// [a-z0-9_-].
    name: String,
    /// Where to create the project directory NAME.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
}

/// The languages a template exists for.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Rust,
    #[value(alias = "py")]
    Python,
    #[value(alias = "js")]
    Javascript,
    C,
    Zig,
}

/// One file of a template: its path in the project and its contents.
#[derive(Debug)]
struct TemplateFile {
    path: &'static str,
    contents: &'static str,
}

/// `examples/drivers/<lang>/<path>`, compiled in.
macro_rules! template {
    ($lang:literal: $($path:literal),+ $(,)?) => {
        &[$(TemplateFile {
            path: $path,
            contents: include_str!(concat!("../../../examples/drivers/", $lang, "/", $path)),
        }),+]
    };
}

/// The contract, in every project.
const WIT: TemplateFile = TemplateFile {
    path: "wit/driver.wit",
    contents: include_str!("../../../wit/driver.wit"),
};

/// The build scripts' shared helpers, in the projects whose script sources
/// them.
const LIB_SH: TemplateFile = TemplateFile {
    path: "lib.sh",
    contents: include_str!("../../../examples/drivers/lib.sh"),
};

impl Lang {
    /// The template's directory under examples/drivers/.
    fn dir(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Javascript => "javascript",
            Lang::C => "c",
            Lang::Zig => "zig",
        }
    }

    /// The driver name the template is written with, replaced by the new
    /// one.
    fn template_name(self) -> String {
        format!("{}-file", self.dir())
    }

    fn files(self) -> &'static [TemplateFile] {
        match self {
            Lang::Rust => template!("rust":
                ".gitignore", "README.md", "build.sh", "Cargo.toml", "Cargo.lock",
                ".cargo/config.toml", "src/lib.rs"),
            Lang::Python => template!("python":
                ".gitignore", "README.md", "build.sh", "driver.py"),
            Lang::Javascript => template!("javascript":
                ".gitignore", "README.md", "build.sh", "driver.js"),
            Lang::C => template!("c":
                ".gitignore", "README.md", "build.sh", "driver.c", "libc/libc.c",
                "libc/stdlib.h", "libc/string.h", "bindings/WIT.sha256",
                "bindings/consensus_driver.c", "bindings/consensus_driver.h",
                "gen-bindings.sh", "gen/Cargo.toml", "gen/Cargo.lock", "gen/src/main.rs"),
            Lang::Zig => template!("zig":
                ".gitignore", "README.md", "build.sh", "driver.zig"),
        }
    }

    /// What the template links to beside its own files.
    fn shared(self) -> &'static [TemplateFile] {
        match self {
            Lang::Rust => &[WIT],
            _ => &[WIT, LIB_SH],
        }
    }

    /// Names the project cannot take: in Rust, a package named like one of
    /// its locked dependencies makes `cargo build --locked` fail.
    fn taken_names(self) -> Vec<&'static str> {
        let lock = match self {
            Lang::Rust => self.files().iter().find(|f| f.path == "Cargo.lock"),
            _ => None,
        };
        lock.map(|f| {
            f.contents
                .lines()
                .filter_map(|l| l.strip_prefix("name = \""))
                .filter_map(|l| l.strip_suffix('"'))
                .filter(|n| *n != self.template_name())
                .collect()
        })
        .unwrap_or_default()
    }

    fn title(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Javascript => "JavaScript",
            Lang::C => "C",
            Lang::Zig => "Zig",
        }
    }

    /// What `build.sh` needs on the machine, and what it installs itself.
    fn prerequisites(self) -> &'static str {
        match self {
            Lang::Rust => "cargo and rustup; it adds the wasm32-wasip2 target",
            Lang::Python => "python3 with venv; it installs componentize-py from PyPI",
            Lang::Javascript => "node >= 20 and npm; it installs componentize-js from npm",
            Lang::C => {
                "python3 with venv, and apt-get (as root or with sudo) for clang-14 and \
                 lld-14; it installs wasm-tools from PyPI"
            }
            Lang::Zig => "python3 with venv; it installs zig and wasm-tools from PyPI",
        }
    }
}

/// Why `name` cannot name a driver project in `lang`, if it cannot: a
/// driver's name is its storage namespace (1-64 of [a-z0-9_-]); starting
/// with a letter also makes it a valid Rust crate and file name everywhere.
fn check_name(lang: Lang, name: &str) -> Result<(), String> {
    let first_is_letter = name.starts_with(|c: char| c.is_ascii_lowercase());
    let rest_ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if name.len() > 64 || !first_is_letter || !rest_ok {
        return Err(format!(
            "{name:?} cannot name a driver: use a lowercase letter, then up to 63 of \
             a-z, 0-9, '-' and '_' (it becomes the driver's storage namespace), \
             e.g. my-driver"
        ));
    }
    let crate_name = |n: &str| n.replace('_', "-");
    if let Some(taken) = lang
        .taken_names()
        .into_iter()
        .find(|t| crate_name(t) == crate_name(name))
    {
        return Err(format!(
            "{name:?} is the name of a crate the {lang:?} template depends on ({taken}): \
             choose another name"
        ));
    }
    Ok(())
}

/// The project's files, `(path, contents)`, with the new name in place of
/// the template's.
fn render(lang: Lang, name: &str) -> Vec<(&'static str, String)> {
    let from = lang.template_name();
    lang.files()
        .iter()
        .map(|f| (f.path, f.contents.replace(&from, name)))
        .chain(
            lang.shared()
                .iter()
                .map(|f| (f.path, f.contents.to_string())),
        )
        .collect()
}

/// A template's executables are its scripts that name an interpreter
/// (`lib.sh` is sourced, not run).
fn is_script(contents: &str) -> bool {
    contents.starts_with("#!")
}

pub fn new_driver(args: NewDriverArgs) -> anyhow::Result<()> {
    check_name(args.lang, &args.name).map_err(anyhow::Error::msg)?;
    let project = args.dir.join(&args.name);
    if project.exists() {
        bail!(
            "{} already exists: choose another NAME or --dir (nothing was written)",
            project.display()
        );
    }
    // Written beside its final place and renamed into it: a failure
    // (a full disk) leaves no half-made project behind.
    let staging = args.dir.join(format!(".{}.new-driver", args.name));
    let written = write_project(&staging, &render(args.lang, &args.name))
        .and_then(|()| {
            std::fs::rename(&staging, &project)
                .with_context(|| format!("cannot move it to {}", project.display()))
        })
        .with_context(|| format!("cannot write the project in {}", staging.display()));
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    let name = &args.name;
    println!(
        "created {}: a single-node driver in {}, for WIT tsohost:driver@{}\n\
         \n\
         Next (build.sh needs {}):\n\
         \x20 cd {}\n\
         \x20 ./build.sh                            # -> out/{name}.wasm\n\
         \x20 tsohost check-driver out/{name}.wasm  # every rule holds\n\
         \x20 tsohost serve --driver out/{name}.wasm\n\
         \n\
         Its README.md says where the driver's logic is and how to change it.",
        project.display(),
        args.lang.title(),
        crate::driver::bindings::WIT_VERSION,
        args.lang.prerequisites(),
        project.display(),
    );
    Ok(())
}

fn write_project(root: &Path, files: &[(&'static str, String)]) -> anyhow::Result<()> {
    if root.exists() {
        // Left by an interrupted run: ours to replace.
        std::fs::remove_dir_all(root)
            .with_context(|| format!("cannot remove {}", root.display()))?;
    }
    for (path, contents) in files {
        let path_in = root.join(path);
        if let Some(parent) = path_in.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path_in, contents)
            .with_context(|| format!("cannot write {}", path_in.display()))?;
        if is_script(contents) {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path_in, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("cannot make {} executable", path_in.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template_dir(lang: Lang) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/drivers")
            .join(lang.dir())
    }

    /// The template's files as the repository has them: every file under
    /// its directory but the links (`wit`, `lib.sh`) and what its
    /// `.gitignore` names (build outputs, toolchains).
    fn files_on_disk(lang: Lang) -> Vec<String> {
        let dir = template_dir(lang);
        let ignored: Vec<String> = std::fs::read_to_string(dir.join(".gitignore"))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| l.trim_matches('/').to_string())
            .collect();
        let mut found = Vec::new();
        let mut todo = vec![dir.clone()];
        while let Some(d) = todo.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let entry = entry.unwrap();
                let name = entry.file_name().to_string_lossy().to_string();
                let kind = entry.file_type().unwrap();
                if ignored.contains(&name) || kind.is_symlink() {
                    continue;
                }
                if kind.is_dir() {
                    todo.push(entry.path());
                } else {
                    let rel = entry.path().strip_prefix(&dir).unwrap().to_owned();
                    found.push(rel.to_string_lossy().to_string());
                }
            }
        }
        found.sort();
        found
    }

    const LANGS: [Lang; 5] = [
        Lang::Rust,
        Lang::Python,
        Lang::Javascript,
        Lang::C,
        Lang::Zig,
    ];

    /// A file added to a template directory and forgotten here would be
    /// missing from every new project.
    #[test]
    fn every_file_of_a_template_is_compiled_in() {
        for lang in LANGS {
            let mut listed: Vec<String> = lang.files().iter().map(|f| f.path.to_string()).collect();
            listed.sort();
            assert_eq!(
                listed,
                files_on_disk(lang),
                "examples/drivers/{}",
                lang.dir()
            );
        }
    }

    #[test]
    fn the_template_name_is_replaced_everywhere_and_spelled_in_the_driver() {
        for lang in LANGS {
            let from = lang.template_name();
            let files = render(lang, "my-first_driver");
            assert!(files.iter().all(|(_, c)| !c.contains(&from)), "{from}");
            let builds = files.iter().find(|(p, _)| *p == "build.sh").unwrap();
            assert!(builds.1.contains("my-first_driver"), "{from}: build.sh");
            assert!(
                lang.files().iter().any(|f| f.path != "build.sh"
                    && f.path != "README.md"
                    && f.contents.contains(&format!("\"{from}\""))),
                "{from}: the driver's source does not spell its name"
            );
        }
    }

    #[test]
    fn a_project_gets_the_current_contract_and_the_shared_helpers() {
        let files = render(Lang::Python, "x");
        let wit = files.iter().find(|(p, _)| *p == "wit/driver.wit").unwrap();
        let version = crate::driver::bindings::WIT_VERSION;
        assert!(
            wit.1
                .contains(&format!("package tsohost:driver@{version};"))
        );
        assert!(
            files
                .iter()
                .any(|(p, c)| *p == "lib.sh" && c.contains("pip_tools()"))
        );
        // A script that sources lib.sh gets it; Rust's does not.
        for lang in LANGS {
            let files = render(lang, "x");
            let script = &files.iter().find(|(p, _)| *p == "build.sh").unwrap().1;
            let has_lib = files.iter().any(|(p, _)| *p == "lib.sh");
            assert_eq!(script.contains("/lib.sh\""), has_lib, "{lang:?}");
        }
    }

    #[test]
    fn names_that_cannot_be_a_namespace_or_a_crate_are_refused() {
        for lang in LANGS {
            for good in ["a", "my-driver", "raft_2", &"a".repeat(64)] {
                assert!(check_name(lang, good).is_ok(), "{good}");
            }
            for bad in [
                "",
                "2fast",
                "-x",
                "My",
                "a b",
                "a/b",
                "..",
                &"a".repeat(65),
                "ä",
            ] {
                assert!(check_name(lang, bad).is_err(), "{bad}");
            }
        }
        // `cargo build --locked` fails for a package named like a locked
        // dependency; the other languages have no such dependency.
        for taken in ["wit-bindgen", "wit_bindgen", "log"] {
            assert!(check_name(Lang::Rust, taken).is_err(), "{taken}");
            assert!(check_name(Lang::Python, taken).is_ok(), "{taken}");
        }
    }

    #[test]
    fn an_existing_directory_is_never_written_into() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("taken")).unwrap();
        std::fs::write(dir.path().join("taken/keep"), "mine").unwrap();
        let args = NewDriverArgs {
            lang: Lang::Javascript,
            name: "taken".into(),
            dir: dir.path().to_owned(),
        };
        let err = new_driver(args).unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("taken/keep")).unwrap(),
            "mine"
        );
    }

    #[test]
    fn a_project_is_written_whole_with_its_scripts_executable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let args = NewDriverArgs {
            lang: Lang::C,
            name: "mine".into(),
            dir: dir.path().to_owned(),
        };
        new_driver(args).unwrap();
        let project = dir.path().join("mine");
        for (path, contents) in render(Lang::C, "mine") {
            let on_disk = project.join(path);
            assert_eq!(
                std::fs::read_to_string(&on_disk).unwrap(),
                contents,
                "{path}"
            );
            let mode = std::fs::metadata(&on_disk).unwrap().permissions().mode();
            let script = matches!(path, "build.sh" | "gen-bindings.sh");
            assert_eq!(mode & 0o111 != 0, script, "{path}");
        }
        // Nothing else: no staging directory left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
