//! `tsohost serve --config FILE`: a TOML file whose keys are `serve`'s flags
//! (`listen = "0.0.0.0:7373"`, `driver-option = ["k=v"]`, `bootstrap =
//! true`).
//!
//! The keys are not a second list of settings: they are read off clap's
//! definition of `serve`, and each value is handed to clap as the flag it
//! names, so a new flag is a new key and every check a flag gets (its value
//! parser, `requires`, `conflicts_with`, the checks of [`super::serve`])
//! applies to the file too. Precedence is flags > environment
//! (`TSOHOST_<FLAG>`) > file > defaults: a first, lenient parse of the
//! command line tells which flags the command line or the environment set
//! already, and the file's values for those are left out.
//!
//! The file is checked as a whole before anything starts, whatever
//! overrides it: an unknown key (with the nearest known one), a value of
//! the wrong TOML type (with the type expected) or a value its flag would
//! refuse is an error naming the file, the line and the key.

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};
use std::any::TypeId;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// The `serve` argument that names the file (not a key of the file).
const CONFIG_ID: &str = "config";

/// Global arguments of the root command that configure `serve` too, and
/// so are keys of the file. (The other globals, `--ca-file` and the client
/// certificate, are for commands that talk to a node.)
const SERVE_GLOBALS: &[&str] = &["log_format"];

/// What is wrong with a configuration file. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the configuration file {} is not valid TOML: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error(
        "{}:{line}: unknown key `{key}`{}; the keys are serve's flags without \
         the dashes in front (`tsohost serve --help`)",
        path.display(),
        match nearest { Some(k) => format!(" (did you mean `{k}`?)"), None => String::new() }
    )]
    UnknownKey {
        path: PathBuf,
        line: usize,
        key: String,
        nearest: Option<String>,
    },
    #[error(
        "{}:{line}: key `{key}` must be {expected}, not {found}",
        path.display()
    )]
    WrongType {
        path: PathBuf,
        line: usize,
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("{}:{line}: key `{key}`: invalid value `{value}`: {reason}", path.display())]
    BadValue {
        path: PathBuf,
        line: usize,
        key: String,
        value: String,
        reason: String,
    },
}

/// The command line to parse: `argv` itself, or, when it runs `serve`
/// with `--config FILE` (or `TSOHOST_CONFIG`), `argv` followed by the
/// file's settings as flags (`--KEY=VALUE`), less those the command line or
/// the environment already sets. The file's path comes back with it, for
/// error messages about those flags.
pub fn with_config_file(
    cmd: &Command,
    argv: Vec<OsString>,
) -> Result<(Vec<OsString>, Option<PathBuf>), ConfigError> {
    // A parse that records what it can and reports nothing: errors (and
    // --help) are left to the real parse, which sees the same argv.
    let Ok(root) = cmd
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(argv.clone())
    else {
        return Ok((argv, None));
    };
    let Some(("serve", serve)) = root.subcommand() else {
        return Ok((argv, None));
    };
    let Some(path) = serve.get_one::<PathBuf>(CONFIG_ID).cloned() else {
        return Ok((argv, None));
    };
    let serve_cmd = cmd
        .find_subcommand("serve")
        .expect("the serve subcommand exists");
    let settings = read(&path, &keys(cmd, serve_cmd))?;
    let mut argv = argv;
    for setting in settings {
        let id = setting.arg.get_id().as_str();
        if set_outside_the_file(serve, id) {
            continue;
        }
        let long = setting.arg.get_long().expect("keys are long flags");
        match setting.values {
            Values::Flag(false) => {}
            Values::Flag(true) => argv.push(format!("--{long}").into()),
            Values::List(values) => {
                for value in values {
                    argv.push(format!("--{long}={value}").into());
                }
            }
        }
    }
    Ok((argv, Some(path)))
}

/// Whether the command line or the environment gave argument `id` a value
/// (globals, given before or after `serve`, are in `serve`'s matches too).
fn set_outside_the_file(matches: &ArgMatches, id: &str) -> bool {
    matches!(
        matches.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// The keys a file may hold: `serve`'s long flags (but `--config` and
/// `--help`) and the globals of [`SERVE_GLOBALS`], by name.
fn keys<'a>(root: &'a Command, serve: &'a Command) -> Vec<&'a Arg> {
    let own = serve.get_arguments().filter(|a| {
        let id = a.get_id().as_str();
        a.get_long().is_some() && id != CONFIG_ID && id != "help"
    });
    let globals = root
        .get_arguments()
        .filter(|a| SERVE_GLOBALS.contains(&a.get_id().as_str()));
    own.chain(globals).collect()
}

/// One key of the file: its flag and the values to pass it.
struct Setting<'a> {
    arg: &'a Arg,
    values: Values,
}

enum Values {
    /// A switch (`bootstrap = true`): passed when true.
    Flag(bool),
    /// One value, or a repeatable flag's values in order.
    List(Vec<String>),
}

/// Read and check the whole file against `keys`.
fn read<'a>(path: &Path, keys: &[&'a Arg]) -> Result<Vec<Setting<'a>>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    check(path, &text, keys)
}

/// Check `text`, the contents of the file at `path`, against `keys`.
fn check<'a>(path: &Path, text: &str, keys: &[&'a Arg]) -> Result<Vec<Setting<'a>>, ConfigError> {
    let doc = toml_edit::Document::parse(text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })?;
    let line_of = |span: Option<std::ops::Range<usize>>| {
        span.map_or(0, |s| text[..s.start].matches('\n').count() + 1)
    };
    let mut settings = Vec::new();
    for (key, item) in doc.as_table().iter() {
        let line = line_of(doc.as_table().key(key).and_then(|k| k.span()));
        let Some(arg) = keys.iter().find(|a| a.get_long() == Some(key)) else {
            return Err(ConfigError::UnknownKey {
                path: path.to_path_buf(),
                line,
                key: key.to_string(),
                nearest: nearest(key, keys.iter().filter_map(|a| a.get_long())),
            });
        };
        let wrong_type = |expected| ConfigError::WrongType {
            path: path.to_path_buf(),
            line,
            key: key.to_string(),
            expected,
            found: toml_type(item),
        };
        let values = match arg.get_action() {
            ArgAction::SetTrue => Values::Flag(
                item.as_bool()
                    .ok_or_else(|| wrong_type("a boolean (true or false)"))?,
            ),
            ArgAction::Append => {
                let expected = "an array of strings (e.g. [\"a\", \"b\"])";
                let array = item.as_array().ok_or_else(|| wrong_type(expected))?;
                let values = array.iter().map(|v| v.as_str().map(str::to_string));
                Values::List(
                    values
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| wrong_type(expected))?,
                )
            }
            _ if takes_integer(arg) => {
                let n = item.as_integer().ok_or_else(|| wrong_type("an integer"))?;
                Values::List(vec![n.to_string()])
            }
            _ => {
                let s = item.as_str().ok_or_else(|| wrong_type("a string"))?;
                Values::List(vec![s.to_string()])
            }
        };
        // The flag's own parser, so that a bad value is reported against
        // the file rather than as a flag the user never typed.
        if let Values::List(values) = &values {
            for value in values.iter().flat_map(|v| split(arg, v)) {
                check_value(arg, value).map_err(|reason| ConfigError::BadValue {
                    path: path.to_path_buf(),
                    line,
                    key: key.to_string(),
                    value: value.to_string(),
                    reason,
                })?;
            }
        }
        settings.push(Setting { arg, values });
    }
    Ok(settings)
}

/// Run `arg`'s value parser on one value: why it refuses it, if it does.
/// (clap keeps `ValueParser::parse_ref` to itself: the parser runs in a
/// command of one argument, which carries none of the real one's
/// `requires` or conflicts.)
fn check_value(arg: &Arg, value: &str) -> Result<(), String> {
    let id = arg.get_id().clone();
    let probe = Command::new("config")
        .no_binary_name(true)
        .disable_help_flag(true)
        .arg(
            Arg::new(id)
                .long("value")
                .action(ArgAction::Set)
                .allow_hyphen_values(true)
                .value_parser(arg.get_value_parser().clone()),
        );
    let Err(e) = probe.try_get_matches_from([OsStr::new("--value"), OsStr::new(value)]) else {
        return Ok(());
    };
    if let Some(source) = std::error::Error::source(&e) {
        return Err(source.to_string());
    }
    let possible: Vec<String> = arg
        .get_possible_values()
        .iter()
        .map(|v| v.get_name().to_string())
        .collect();
    if possible.is_empty() {
        Err(e.kind().to_string())
    } else {
        Err(format!("expected one of {}", possible.join(", ")))
    }
}

/// `value` as clap will split it for `arg` (`value_delimiter`).
fn split<'v>(arg: &Arg, value: &'v str) -> Vec<&'v str> {
    match arg.get_value_delimiter() {
        Some(d) => value.split(d).collect(),
        None => vec![value],
    }
}

/// Whether the flag's value is a number, so that the file must give a
/// TOML integer (`node-id = 2`, not `"2"`).
fn takes_integer(arg: &Arg) -> bool {
    let id = arg.get_value_parser().type_id();
    [
        TypeId::of::<u8>(),
        TypeId::of::<u16>(),
        TypeId::of::<u32>(),
        TypeId::of::<u64>(),
        TypeId::of::<usize>(),
        TypeId::of::<i32>(),
        TypeId::of::<i64>(),
    ]
    .iter()
    .any(|t| id == *t)
}

fn toml_type(item: &toml_edit::Item) -> &'static str {
    match item {
        toml_edit::Item::Value(toml_edit::Value::String(_)) => "a string",
        toml_edit::Item::Value(toml_edit::Value::Integer(_)) => "an integer",
        toml_edit::Item::Value(toml_edit::Value::Float(_)) => "a float",
        toml_edit::Item::Value(toml_edit::Value::Boolean(_)) => "a boolean",
        toml_edit::Item::Value(toml_edit::Value::Datetime(_)) => "a date-time",
        toml_edit::Item::Value(toml_edit::Value::Array(_)) => "an array",
        toml_edit::Item::Value(toml_edit::Value::InlineTable(_)) | toml_edit::Item::Table(_) => {
            "a table"
        }
        toml_edit::Item::ArrayOfTables(_) => "an array of tables",
        toml_edit::Item::None => "nothing",
    }
}

/// The known key closest to a misspelt one (`data_dir`, `node-ids`), if
/// one is close enough to be what was meant.
fn nearest<'k>(key: &str, known: impl Iterator<Item = &'k str>) -> Option<String> {
    known
        .map(|k| (edit_distance(key, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min()
        .map(|(_, k)| k.to_string())
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("data_dir", "data-dir"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("listen", "listen"), 0);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn the_nearest_key_is_suggested_only_when_close() {
        let known = ["data-dir", "driver", "driver-option", "listen"];
        let near = |k| nearest(k, known.iter().copied());
        assert_eq!(near("data_dir").as_deref(), Some("data-dir"));
        assert_eq!(near("driver-options").as_deref(), Some("driver-option"));
        assert_eq!(near("lisen").as_deref(), Some("listen"));
        assert_eq!(near("serve"), None);
    }

    /// Every global named as a key exists, and every `serve` flag but
    /// `--config` is a key: the file cannot drift from the flags.
    #[test]
    fn the_keys_are_the_flags_of_serve() {
        use clap::CommandFactory;
        let root = super::super::Cli::command();
        let serve = root.find_subcommand("serve").unwrap();
        let keys: Vec<&str> = keys(&root, serve)
            .iter()
            .filter_map(|a| a.get_long())
            .collect();
        for global in SERVE_GLOBALS {
            assert!(
                root.get_arguments().any(|a| a.get_id() == *global),
                "{global} is not a global argument"
            );
        }
        assert!(keys.contains(&"log-format"));
        for arg in serve.get_arguments() {
            let long = arg.get_long().unwrap();
            assert_eq!(keys.contains(&long), long != "config", "--{long}");
            // Its value in a file is a switch, a list or one scalar.
            assert!(
                matches!(
                    arg.get_action(),
                    ArgAction::SetTrue | ArgAction::Append | ArgAction::Set
                ),
                "--{long}: {:?}",
                arg.get_action()
            );
        }
    }

    /// The package's example file (host/dist/tsohost.toml) names every key
    /// once, each with a value its flag takes: uncommented, every line
    /// passes the checks a user's file goes through.
    #[test]
    fn the_example_file_names_every_key_with_a_valid_value() {
        use clap::CommandFactory;
        let root = super::super::Cli::command();
        let serve = root.find_subcommand("serve").unwrap();
        let keys = keys(&root, serve);
        let example = include_str!("../../dist/tsohost.toml");
        let setting = |line: &str| {
            let (key, _) = line.split_once(" = ")?;
            key.chars()
                .all(|c| c.is_ascii_lowercase() || c == '-')
                .then_some(())
        };
        let uncommented: Vec<&str> = example
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest) if setting(rest).is_some() => rest,
                _ => line,
            })
            .collect();
        let settings = check(
            Path::new("host/dist/tsohost.toml"),
            &uncommented.join("\n"),
            &keys,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let named: Vec<&str> = settings.iter().filter_map(|s| s.arg.get_long()).collect();
        for key in keys.iter().filter_map(|a| a.get_long()) {
            assert!(
                named.contains(&key),
                "host/dist/tsohost.toml does not name `{key}`"
            );
        }
    }
}
