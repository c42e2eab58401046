//! From bytes to a validated, precompiled, linked driver component.
//!
//! Loading refuses, with a message that names the file and what to do:
//! bytes that are not WebAssembly, a core module, a component that does not
//! export `tsohost:driver/driver`, one built against an incompatible WIT
//! version, and one that imports what the sandbox does not offer. Compiled
//! code is cached on disk keyed by the component's SHA-256 and the engine's
//! compatibility hash, so restarts and swaps skip compilation.

use super::bindings::on_driver;
use super::bindings::{BindingsPre, DRIVER_INTERFACE, DriverInfo, WIT_VERSIONS, version_index};
use super::instance::{describe, summary};
use super::sandbox::{self, EPOCH_TICK, GuestState};
use crate::clock::SystemClock;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

/// Where a driver's bytes come from.
#[derive(Debug, Clone)]
pub enum DriverSource {
    /// Compiled into the binary (`--driver file`).
    Builtin {
        name: &'static str,
        bytes: &'static [u8],
    },
    /// A `.wasm` file.
    File(PathBuf),
}

impl DriverSource {
    /// A short description for messages: `built-in driver "file"` or the path.
    pub fn label(&self) -> String {
        match self {
            DriverSource::Builtin { name, .. } => format!("built-in driver \"{name}\""),
            DriverSource::File(path) => path.display().to_string(),
        }
    }

    /// The component's bytes.
    pub fn bytes(&self) -> Result<std::borrow::Cow<'static, [u8]>, LoadError> {
        match self {
            DriverSource::Builtin { bytes, .. } => Ok(std::borrow::Cow::Borrowed(bytes)),
            DriverSource::File(path) => {
                std::fs::read(path)
                    .map(std::borrow::Cow::Owned)
                    .map_err(|source| LoadError::Read {
                        path: self.label(),
                        source,
                    })
            }
        }
    }

    /// SHA-256 of the bytes, hex: what `/v1/status` shows as the digest.
    pub fn digest_of(bytes: &[u8]) -> String {
        hex(&Sha256::digest(bytes))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read driver {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{source_label} is not a WebAssembly component (it does not start with the \\0asm \
         magic); --driver takes a built-in name or the path of a driver component (.wasm)"
    )]
    NotWasm { source_label: String },
    #[error(
        "{source_label} is a core WebAssembly module, not a component; build the driver as a \
         component (e.g. cargo build --target wasm32-wasip2, or wasm-tools component new)"
    )]
    CoreModule { source_label: String },
    #[error("{source_label} is not a valid WebAssembly component: {reason}")]
    Invalid {
        source_label: String,
        reason: String,
    },
    #[error(
        "{source_label} does not implement the world tsohost:driver/consensus-driver: it exports \
         [{exports}] but not {DRIVER_INTERFACE}; build it against wit/ of this host"
    )]
    WrongWorld {
        source_label: String,
        exports: String,
    },
    #[error(
        "{source_label} was built against {DRIVER_INTERFACE}@{found}, but this host loads \
         only {} (compatible: the same major version, and the same minor while major is 0); \
         rebuild the driver against wit/ of this host",
        WIT_VERSIONS.join(", ")
    )]
    IncompatibleVersion { source_label: String, found: String },
    #[error(
        "{source_label} cannot be linked in the driver sandbox (drivers get the tsohost host \
         interface and WASI without files or sockets): {reason}"
    )]
    Link {
        source_label: String,
        reason: String,
    },
    #[error(
        "{source_label} could not tell its name: {reason}; a driver's `info` must return \
         without calling the host (it runs before `init`, without storage)"
    )]
    Info {
        source_label: String,
        reason: String,
    },
    #[error(
        "{source_label} reports the driver name {name:?}; a name is 1-64 of [a-z0-9_-] \
         (it names the driver's storage namespace): fix `info` in the driver"
    )]
    BadName { source_label: String, name: String },
    #[error("the wasmtime engine could not be set up: {0}")]
    Engine(String),
}

/// The limits every guest instance runs under, the probe at load included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestLimits {
    /// Guest linear memory cap, bytes.
    pub memory: usize,
    /// Longest one call into the guest may run.
    pub call_timeout: Duration,
}

impl Default for GuestLimits {
    /// `serve`'s defaults: 128 MiB, 1 s.
    fn default() -> Self {
        GuestLimits {
            memory: 128 << 20,
            call_timeout: Duration::from_secs(1),
        }
    }
}

/// A component ready to instantiate, and what operators see of it.
///
/// Invariant: it was compiled, its exports match this host's WIT version,
/// it links in the sandbox, and an instance answered `info` with a valid
/// name, which is [`Self::info`]. Nothing else asks a component its name.
#[derive(Clone)]
pub struct LoadedDriver {
    pub pre: BindingsPre<GuestState>,
    /// What the component says it is: its name names its storage.
    pub info: DriverInfo,
    /// Where it came from.
    pub source: String,
    /// SHA-256 of the component bytes, hex.
    pub digest: String,
    pub size: usize,
    /// The `tsohost:driver` version it was built against.
    pub wit_version: String,
    pub loaded_at: SystemTime,
}

/// The wasmtime engine, the sandbox linker and the compiled-code cache. One
/// per process; cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<GuestState>>,
    cache_dir: Option<PathBuf>,
    limits: GuestLimits,
}

impl Runtime {
    /// `cache_dir`: where precompiled components are kept (`None`: no cache).
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Runtime, LoadError> {
        let mut config = Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        let linker = sandbox::linker(&engine).map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| LoadError::Engine(format!("epoch thread: {e}")))?;
        Ok(Runtime {
            engine,
            linker: Arc::new(linker),
            cache_dir,
            limits: GuestLimits::default(),
        })
    }

    /// Probe loaded components under `limits` (those the node runs them
    /// under) rather than the defaults.
    pub fn with_limits(mut self, limits: GuestLimits) -> Runtime {
        self.limits = limits;
        self
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Read, validate, compile (or fetch from the cache) and link a driver.
    pub fn load(&self, source: &DriverSource) -> Result<LoadedDriver, LoadError> {
        self.load_bytes(&source.label(), &source.bytes()?)
    }

    /// As [`Runtime::load`], for bytes already in memory (a hot swap's upload).
    pub fn load_bytes(&self, label: &str, bytes: &[u8]) -> Result<LoadedDriver, LoadError> {
        check_header(label, bytes)?;
        let digest = hex(&Sha256::digest(bytes));
        let component = self.compile_cached(label, &digest, bytes)?;
        let wit_version = check_exports(&self.engine, label, &component)?;
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|e| {
            let reason = format!("{e:#}");
            LoadError::Link {
                source_label: label.to_string(),
                reason: match super::toolchain::link_hint(&reason) {
                    Some(hint) => format!("{reason}. To fix: {hint}"),
                    None => reason,
                },
            }
        })?;
        let pre = BindingsPre::new(&wit_version, instance_pre).map_err(|e| LoadError::Link {
            source_label: label.to_string(),
            reason: format!("{e:#}"),
        })?;
        let info = self.probe(label, &pre)?;
        Ok(LoadedDriver {
            pre,
            info,
            source: label.to_string(),
            digest,
            size: bytes.len(),
            wit_version,
            loaded_at: SystemTime::now(),
        })
    }

    /// Instantiate the component in a scratch store (no storage; its events
    /// go nowhere) under the guest limits and ask its `info`.
    fn probe(&self, label: &str, pre: &BindingsPre<GuestState>) -> Result<DriverInfo, LoadError> {
        let failed = |reason: String| LoadError::Info {
            source_label: label.to_string(),
            reason,
        };
        let (events, _) = tokio::sync::mpsc::unbounded_channel();
        let state = GuestState::new(
            self.limits.memory,
            0,
            events,
            Arc::new(SystemClock::new()),
            Arc::default(),
            self.limits.call_timeout,
        );
        let mut store = sandbox::store(&self.engine, state, self.limits.call_timeout);
        let bindings = pre
            .instantiate(&mut store)
            .map_err(|e| failed(format!("it cannot be instantiated: {e:#}")))?;
        let info = on_driver!(&bindings, driver => driver.call_info(&mut store)).map_err(|e| {
            let reason = describe(&store, self.limits, "info", e);
            failed(summary(&reason).to_string())
        })?;
        if !valid_name(&info.name) {
            return Err(LoadError::BadName {
                source_label: label.to_string(),
                name: info.name,
            });
        }
        Ok(info)
    }

    fn compile_cached(
        &self,
        label: &str,
        digest: &str,
        bytes: &[u8],
    ) -> Result<Component, LoadError> {
        let invalid = |e: wasmtime::Error| LoadError::Invalid {
            source_label: label.to_string(),
            reason: format!("{e:#}"),
        };
        let Some(dir) = &self.cache_dir else {
            return Component::new(&self.engine, bytes).map_err(invalid);
        };
        let mut hasher = std::hash::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        let path = dir.join(format!("{digest}-{:016x}.cwasm", hasher.finish()));
        if path.exists() {
            // SAFETY: the cache directory is the host's own, and entries are
            // written whole (rename) by this function from our own compiler;
            // the file name binds them to these exact bytes and this engine.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(component) => {
                    tracing::info!(
                        "loaded {label} compiled earlier, from the cache {}",
                        path.display()
                    );
                    return Ok(component);
                }
                Err(e) => tracing::warn!(
                    "discarding unusable cached compilation {}: {e:#}",
                    path.display()
                ),
            }
        }
        tracing::info!(
            "compiling {label} ({} KiB) for this machine: a first start takes a while (up to \
             tens of seconds for a large component); the result is cached in {}",
            bytes.len() / 1024,
            dir.display()
        );
        let started = std::time::Instant::now();
        let component = Component::new(&self.engine, bytes).map_err(invalid)?;
        tracing::info!(
            "compiled {label} ({} KiB) in {:.0?}",
            bytes.len() / 1024,
            started.elapsed()
        );
        if let Err(e) = write_cache(dir, &path, &component) {
            tracing::warn!(
                "could not cache the compiled driver in {}: {e}; the next start compiles again",
                dir.display()
            );
        }
        Ok(component)
    }
}

fn write_cache(dir: &Path, path: &Path, component: &Component) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let serialized = component.serialize().map_err(|e| format!("{e:#}"))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, serialized).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| e.to_string())
}

/// The 8-byte preamble tells a component from a core module from anything
/// else, so the error can say which it is.
fn check_header(label: &str, bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotWasm {
            source_label: label.to_string(),
        });
    }
    match bytes[4..8] {
        [1, 0, 0, 0] => Err(LoadError::CoreModule {
            source_label: label.to_string(),
        }),
        [_, _, 1, 0] => Ok(()),
        _ => Err(LoadError::Invalid {
            source_label: label.to_string(),
            reason: format!("unknown binary version {:?}", &bytes[4..8]),
        }),
    }
}

/// Find the `tsohost:driver/driver@X` export and check X against this host.
fn check_exports(engine: &Engine, label: &str, component: &Component) -> Result<String, LoadError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    let prefix = format!("{DRIVER_INTERFACE}@");
    let Some(found) = exports.iter().find_map(|n| n.strip_prefix(&prefix)) else {
        return Err(LoadError::WrongWorld {
            source_label: label.to_string(),
            exports: exports.join(", "),
        });
    };
    if version_index(found).is_none() {
        return Err(LoadError::IncompatibleVersion {
            source_label: label.to_string(),
            found: found.to_string(),
        });
    }
    Ok(found.to_string())
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_tells_module_from_component() {
        assert!(matches!(
            check_header("x", b"hello world"),
            Err(LoadError::NotWasm { .. })
        ));
        assert!(matches!(
            check_header("x", b"\0asm\x01\0\0\0"),
            Err(LoadError::CoreModule { .. })
        ));
        assert!(check_header("x", b"\0asm\x0d\0\x01\0").is_ok());
    }
}
