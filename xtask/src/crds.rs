//! `cargo xtask crds`: write (or check) `manifests/crds/` from the types in `crates/model`.

use std::path::Path;

use anyhow::{Context, bail};

pub(crate) fn run(root: &Path, check: bool) -> anyhow::Result<()> {
    let dir = root.join("manifests/crds");
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let mut stale = Vec::new();
    for crd in model::crds::rendered()? {
        let path = dir.join(&crd.file_name);
        let current = std::fs::read_to_string(&path).ok();
        if current.as_deref() == Some(crd.yaml.as_str()) {
            println!("up to date  {}", path.display());
            continue;
        }
        if check {
            stale.push(path.display().to_string());
            continue;
        }
        std::fs::write(&path, &crd.yaml)
            .with_context(|| format!("failed to write {}", path.display()))?;
        println!("written     {}", path.display());
    }
    if !stale.is_empty() {
        bail!("out of date (run `cargo xtask crds`): {}", stale.join(", "));
    }
    Ok(())
}
