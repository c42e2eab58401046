//! What a guest toolchain puts into a component that the driver sandbox
//! does not offer, and the fix for that toolchain: a link error names only
//! the missing import ("component imports instance `wasi:http/types@0.2.10`
//! … resource implementation is missing"), which tells a driver author
//! nothing about the flag that removes it.
//!
//! Invariant: a hint is added only for an import the sandbox does not link
//! (docs/architecture.md §4: WASI 0.2 without files or sockets, and the
//! `host` interface of every supported WIT version); the link error itself
//! is always kept.

use super::bindings::WIT_VERSIONS;

/// The fix for the import a link error names, if it is one the usual
/// toolchains add; `None` for anything else.
pub fn link_hint(reason: &str) -> Option<String> {
    let import = missing_import(reason)?;
    let package = import.split_once('@').map_or(import, |(p, _)| p);
    let package = package.split('/').next().unwrap_or(package);
    let hint = match package {
        "wasi:http" => "a driver gets no HTTP. componentize-js adds wasi:http unless told not \
             to: build with `-d http fetch-event` (examples/drivers/lib.sh); componentize-py \
             adds it when the app imports wasi:http bindings (build against wit/ only); \
             in Rust, drop the crate that uses it (wstd, waki, spin-sdk)"
            .to_string(),
        _ if package.starts_with("wasi:") => format!(
            "this host links WASI 0.2 (wasmtime 48: no preopened directories, sockets \
             denied), and not {import}: build for WASI 0.2 (Rust: --target wasm32-wasip2; \
             the toolchains of examples/drivers: componentize-js 0.23 with `-d http \
             fetch-event`, componentize-py 0.25)"
        ),
        "tsohost:driver" => format!(
            "this host offers tsohost:driver {}: rebuild the driver against wit/ of this \
             host",
            WIT_VERSIONS.join(", ")
        ),
        _ => return None,
    };
    Some(hint)
}

/// The interface in "component imports instance `NAME`" (wasmtime's words).
fn missing_import(reason: &str) -> Option<&str> {
    let (_, rest) = reason.split_once("imports instance `")?;
    rest.split_once('`').map(|(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_imports_name_their_fix() {
        let http = "component imports instance `wasi:http/types@0.2.10`, but a matching \
                    implementation was not found in the linker: resource implementation is \
                    missing";
        assert!(link_hint(http).unwrap().contains("-d http fetch-event"));
        let p3 = "component imports instance `wasi:filesystem/types@0.3.0-rc-2025-08-15`";
        assert!(link_hint(p3).unwrap().contains("wasm32-wasip2"));
        let sockets = "component imports instance `wasi:sockets/tcp@0.3.0`";
        assert!(link_hint(sockets).unwrap().contains("WASI 0.2"));
        let host = "component imports instance `tsohost:driver/host@0.9.0`";
        assert!(link_hint(host).unwrap().contains("rebuild the driver"));
        assert_eq!(
            link_hint("component imports instance `acme:thing/x@1.0.0`"),
            None
        );
        assert_eq!(link_hint("something else"), None);
    }
}
