//! `gen-c-bindings WIT-DIR WORLD OUT-DIR`: what `wit-bindgen c
//! --no-object-file --world WORLD --out-dir OUT-DIR WIT-DIR` does.
//!
//! No object file: build.sh embeds the component type with
//! `wasm-tools component embed`, so no binary blob is committed.

use anyhow::{bail, Context, Result};
use std::path::Path;
use wit_bindgen_core::{wit_parser::Resolve, Files};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [wit, world, out] = args.as_slice() else {
        bail!("usage: gen-c-bindings WIT-DIR WORLD OUT-DIR");
    };

    let mut resolve = Resolve::default();
    let (package, _) = resolve.push_path(wit)?;
    let world = resolve.select_world(&[package], Some(world))?;
    let opts = wit_bindgen_c::Opts { no_object_file: true, ..Default::default() };
    let mut files = Files::default();
    opts.build().generate(&mut resolve, world, &mut files)?;

    let out = Path::new(out);
    std::fs::create_dir_all(out)?;
    for (name, contents) in files.iter() {
        let path = out.join(name);
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
