//! The command lines of each Helm action, and the one place where Helm v3 and v4 differ.
//!
//! Verified against `helm <command> --help` of Helm 3.17.3 and 4.1.4:
//!
//! | option | Helm 3 | Helm 4 |
//! |---|---|---|
//! | wait for readiness | `--wait` (off by default) | `--wait=watcher` (`--wait` takes a strategy; the default `hookOnly` waits for hooks only, as Helm 3 without `--wait`) |
//! | replace resources | `--force` | `--force-replace --server-side=false` (`--force` is gone; Helm 4 refuses to replace with server-side apply, its default for releases it installed) |
//! | restart pods on rollback | `--recreate-pods` | removed, no equivalent: ignored with a warning |
//! | roll back on failure | `--atomic` | `--rollback-on-failure` (never used: the reconciler remedies) |
//!
//! Everything else used here is spelled the same in both: `--namespace`, `--timeout`,
//! `--values`, `--output json` (install, upgrade, status, history), `--history-max` (upgrade,
//! rollback), `--reset-values` / `--reuse-values`, `--skip-crds`, `--disable-openapi-validation`,
//! `--no-hooks`, `dependency build --skip-refresh`. `helm rollback`, `test` and `uninstall` have
//! no JSON output. Positional arguments follow `--`, so a chart path starting with `-` is not
//! taken for a flag.
//!
//! Not used on purpose: `--create-namespace` (the Helm Operator never created the target
//! namespace), `--keep-history` (uninstall purges), `--ignore-not-found` (it hides the difference
//! between "removed" and "not found", which the caller wants to see), Helm 4's `--server-side`
//! (its defaults are kept, except that forcing needs client-side apply).

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use super::HelmVersion;
use super::options::{
    DependencyBuildOptions, InstallOptions, RollbackOptions, TestOptions, UninstallOptions,
    UpgradeOptions, ValuesStrategy,
};

/// The flags whose spelling depends on the Helm major version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct VersionFlags {
    /// Wait until the resources are ready.
    wait: &'static str,
    /// Update resources by replacement.
    force: &'static [&'static str],
    /// Restart the pods of the resources on rollback, when the version has such a flag.
    recreate_pods: Option<&'static str>,
}

impl VersionFlags {
    const fn of(version: HelmVersion) -> Self {
        match version {
            HelmVersion::V3 => Self {
                wait: "--wait",
                force: &["--force"],
                recreate_pods: Some("--recreate-pods"),
            },
            HelmVersion::V4 => Self {
                wait: "--wait=watcher",
                force: &["--force-replace", "--server-side=false"],
                recreate_pods: None,
            },
        }
    }
}

/// A helm command line, and the options the version cannot honour (to be logged).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct CommandLine {
    /// The arguments after the binary.
    pub(crate) args: Vec<OsString>,
    /// Options that were set but that this Helm version has no flag for.
    pub(crate) ignored: Vec<&'static str>,
}

impl CommandLine {
    fn new(command: &[&str]) -> Self {
        Self {
            args: command.iter().map(OsString::from).collect(),
            ignored: Vec::new(),
        }
    }

    fn flag(&mut self, flag: &str) -> &mut Self {
        self.args.push(flag.into());
        self
    }

    fn flags_if(&mut self, on: bool, flags: &[&str]) -> &mut Self {
        if on {
            self.args.extend(flags.iter().map(OsString::from));
        }
        self
    }

    fn flag_if(&mut self, on: bool, flag: &str) -> &mut Self {
        if on {
            self.flag(flag);
        }
        self
    }

    fn option(&mut self, flag: &str, value: impl Into<OsString>) -> &mut Self {
        self.args.push(flag.into());
        self.args.push(value.into());
        self
    }

    fn positional(&mut self, values: &[&std::ffi::OsStr]) -> &mut Self {
        self.args.push("--".into());
        self.args.extend(values.iter().map(|v| v.to_os_string()));
        self
    }
}

/// A duration as Go's `time.ParseDuration` reads it: whole seconds (`300s`), or milliseconds when
/// there is a fraction (`1500ms`).
pub(crate) fn go_duration(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

/// `helm install`.
pub(crate) fn install(
    version: HelmVersion,
    options: &InstallOptions,
    values_file: &Path,
) -> CommandLine {
    let flags = VersionFlags::of(version);
    let mut line = CommandLine::new(&["install"]);
    line.option("--namespace", &options.namespace)
        .option("--output", "json")
        .option("--timeout", go_duration(options.timeout))
        .option("--values", values_file)
        .flag_if(options.wait, flags.wait)
        .flag_if(options.skip_crds, "--skip-crds")
        .flag_if(
            options.disable_openapi_validation,
            "--disable-openapi-validation",
        )
        .positional(&[options.release.as_ref(), options.chart.as_os_str()]);
    line
}

/// `helm upgrade` (never `--install`: the reconciler decides between install and upgrade).
pub(crate) fn upgrade(
    version: HelmVersion,
    options: &UpgradeOptions,
    values_file: &Path,
) -> CommandLine {
    let flags = VersionFlags::of(version);
    let mut line = CommandLine::new(&["upgrade"]);
    line.option("--namespace", &options.namespace)
        .option("--output", "json")
        .option("--timeout", go_duration(options.timeout))
        .option("--values", values_file)
        .option("--history-max", options.max_history.to_string())
        .flag(match options.values_strategy {
            ValuesStrategy::Reset => "--reset-values",
            ValuesStrategy::Reuse => "--reuse-values",
        })
        .flag_if(options.wait, flags.wait)
        .flags_if(options.force, flags.force)
        .flag_if(options.skip_crds, "--skip-crds")
        .flag_if(
            options.disable_openapi_validation,
            "--disable-openapi-validation",
        )
        .positional(&[options.release.as_ref(), options.chart.as_os_str()]);
    line
}

/// `helm rollback`.
pub(crate) fn rollback(version: HelmVersion, options: &RollbackOptions) -> CommandLine {
    let flags = VersionFlags::of(version);
    let mut line = CommandLine::new(&["rollback"]);
    line.option("--namespace", &options.namespace)
        .option("--timeout", go_duration(options.timeout))
        .option("--history-max", options.max_history.to_string())
        .flag_if(options.wait, flags.wait)
        .flag_if(options.disable_hooks, "--no-hooks")
        .flags_if(options.force, flags.force);
    if options.recreate {
        match flags.recreate_pods {
            Some(flag) => {
                line.flag(flag);
            }
            None => line.ignored.push("recreate"),
        }
    }
    let revision = options.revision.map(|r| OsString::from(r.to_string()));
    match &revision {
        Some(revision) => line.positional(&[options.release.as_ref(), revision.as_os_str()]),
        None => line.positional(&[options.release.as_ref()]),
    };
    line
}

/// `helm uninstall` (purge: no `--keep-history`).
pub(crate) fn uninstall(version: HelmVersion, options: &UninstallOptions) -> CommandLine {
    let flags = VersionFlags::of(version);
    let mut line = CommandLine::new(&["uninstall"]);
    line.option("--namespace", &options.namespace)
        .option("--timeout", go_duration(options.timeout))
        .flag_if(options.wait, flags.wait)
        .positional(&[options.release.as_ref()]);
    line
}

/// `helm test`.
pub(crate) fn test(_version: HelmVersion, options: &TestOptions) -> CommandLine {
    let mut line = CommandLine::new(&["test"]);
    line.option("--namespace", &options.namespace)
        .option("--timeout", go_duration(options.timeout))
        .positional(&[options.release.as_ref()]);
    line
}

/// `helm status -o json`.
pub(crate) fn status(_version: HelmVersion, namespace: &str, release: &str) -> CommandLine {
    let mut line = CommandLine::new(&["status"]);
    line.option("--namespace", namespace)
        .option("--output", "json")
        .positional(&[release.as_ref()]);
    line
}

/// `helm history -o json`.
pub(crate) fn history(_version: HelmVersion, namespace: &str, release: &str) -> CommandLine {
    let mut line = CommandLine::new(&["history"]);
    line.option("--namespace", namespace)
        .option("--output", "json")
        .positional(&[release.as_ref()]);
    line
}

/// `helm dependency build`.
pub(crate) fn dependency_build(
    _version: HelmVersion,
    options: &DependencyBuildOptions,
) -> CommandLine {
    let mut line = CommandLine::new(&["dependency", "build"]);
    line.flag_if(options.skip_refresh, "--skip-refresh")
        .positional(&[options.chart.as_os_str()]);
    line
}

/// `helm version --short` (`v3.17.3+ge4da497`), the same in both versions.
pub(crate) fn version() -> CommandLine {
    CommandLine::new(&["version", "--short"])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The arguments joined by spaces (none of the test arguments contains one).
    fn args(line: &CommandLine) -> String {
        line.args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn every_option_on() -> (
        InstallOptions,
        UpgradeOptions,
        RollbackOptions,
        UninstallOptions,
    ) {
        let mut install = InstallOptions::new("web", "apps", "/charts/hello");
        install.timeout = Duration::from_secs(60);
        install.wait = true;
        install.skip_crds = true;
        install.disable_openapi_validation = true;
        let mut upgrade = UpgradeOptions::new("web", "apps", "/charts/hello-0.2.0.tgz");
        upgrade.timeout = Duration::from_millis(1500);
        upgrade.wait = true;
        upgrade.force = true;
        upgrade.values_strategy = ValuesStrategy::Reuse;
        upgrade.max_history = 0;
        upgrade.skip_crds = true;
        upgrade.disable_openapi_validation = true;
        let mut rollback = RollbackOptions::new("web", "apps");
        rollback.revision = Some(3);
        rollback.timeout = Duration::from_secs(120);
        rollback.wait = true;
        rollback.disable_hooks = true;
        rollback.recreate = true;
        rollback.force = true;
        rollback.max_history = 5;
        let mut uninstall = UninstallOptions::new("web", "apps");
        uninstall.wait = true;
        (install, upgrade, rollback, uninstall)
    }

    const VALUES: &str = "/state/tmp/values-x.json";

    #[test]
    fn durations_are_written_as_go_durations() {
        assert_eq!(go_duration(Duration::from_secs(300)), "300s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn helm_3_command_lines() {
        let v = HelmVersion::V3;
        let (install, upgrade, rollback, uninstall) = every_option_on();
        assert_eq!(
            args(&super::install(v, &install, Path::new(VALUES))),
            "install --namespace apps --output json --timeout 60s \
             --values /state/tmp/values-x.json --wait --skip-crds --disable-openapi-validation \
             -- web /charts/hello"
        );
        assert_eq!(
            args(&super::upgrade(v, &upgrade, Path::new(VALUES))),
            "upgrade --namespace apps --output json --timeout 1500ms \
             --values /state/tmp/values-x.json --history-max 0 --reuse-values --wait --force \
             --skip-crds --disable-openapi-validation -- web /charts/hello-0.2.0.tgz"
        );
        let line = super::rollback(v, &rollback);
        assert_eq!(
            args(&line),
            "rollback --namespace apps --timeout 120s --history-max 5 --wait --no-hooks --force \
             --recreate-pods -- web 3"
        );
        assert!(line.ignored.is_empty());
        assert_eq!(
            args(&super::uninstall(v, &uninstall)),
            "uninstall --namespace apps --timeout 300s --wait -- web"
        );
    }

    #[test]
    fn helm_4_command_lines() {
        let v = HelmVersion::V4;
        let (install, upgrade, rollback, uninstall) = every_option_on();
        assert_eq!(
            args(&super::install(v, &install, Path::new(VALUES))),
            "install --namespace apps --output json --timeout 60s \
             --values /state/tmp/values-x.json --wait=watcher --skip-crds \
             --disable-openapi-validation -- web /charts/hello"
        );
        assert_eq!(
            args(&super::upgrade(v, &upgrade, Path::new(VALUES))),
            "upgrade --namespace apps --output json --timeout 1500ms \
             --values /state/tmp/values-x.json --history-max 0 --reuse-values --wait=watcher \
             --force-replace --server-side=false --skip-crds --disable-openapi-validation \
             -- web /charts/hello-0.2.0.tgz"
        );
        let line = super::rollback(v, &rollback);
        assert_eq!(
            args(&line),
            "rollback --namespace apps --timeout 120s --history-max 5 --wait=watcher --no-hooks \
             --force-replace --server-side=false -- web 3"
        );
        assert_eq!(line.ignored, ["recreate"], "Helm 4 has no --recreate-pods");
        assert_eq!(
            args(&super::uninstall(v, &uninstall)),
            "uninstall --namespace apps --timeout 300s --wait=watcher -- web"
        );
    }

    #[test]
    fn defaults_give_the_same_minimal_command_lines_in_both_versions() {
        for v in [HelmVersion::V3, HelmVersion::V4] {
            let install = InstallOptions::new("web", "apps", "/c");
            assert_eq!(
                args(&super::install(v, &install, Path::new("/v.json"))),
                "install --namespace apps --output json --timeout 300s --values /v.json -- web /c"
            );
            let upgrade = UpgradeOptions::new("web", "apps", "/c");
            assert_eq!(
                args(&super::upgrade(v, &upgrade, Path::new("/v.json"))),
                "upgrade --namespace apps --output json --timeout 300s --values /v.json \
                 --history-max 10 --reset-values -- web /c"
            );
            assert_eq!(
                args(&super::rollback(v, &RollbackOptions::new("web", "apps"))),
                "rollback --namespace apps --timeout 300s --history-max 10 -- web"
            );
            assert_eq!(
                args(&super::test(v, &TestOptions::new("web", "apps"))),
                "test --namespace apps --timeout 300s -- web"
            );
            assert_eq!(
                args(&super::status(v, "apps", "web")),
                "status --namespace apps --output json -- web"
            );
            assert_eq!(
                args(&super::history(v, "apps", "web")),
                "history --namespace apps --output json -- web"
            );
            let mut build = DependencyBuildOptions::new("/charts/umbrella");
            assert_eq!(
                args(&super::dependency_build(v, &build)),
                "dependency build -- /charts/umbrella"
            );
            build.skip_refresh = true;
            assert_eq!(
                args(&super::dependency_build(v, &build)),
                "dependency build --skip-refresh -- /charts/umbrella"
            );
            assert_eq!(args(&super::version()), "version --short");
        }
    }
}
