//! Starting image automation in the agent: the registry scanner built from the
//! `--registry-*` flags, its scan loop, and the automation loop, as tasks stopped by
//! [`Service::stop`] (or when dropped).
//!
//! Off with `--git-readonly` or `--registry-disable-scanning`, as in Flux v1 (row 74).

use std::path::Path;
use std::sync::{Arc, Mutex};

use git_mirror::Mirror;

use crate::api::AgentState;
use crate::args::AutomationArgs;
use crate::automation::run::{AutomationConfig, Automator, RunError, RunReport};
use crate::automation::status;
use crate::manifests::LoadOptions;
use crate::metrics::Metrics;
use crate::registry::{RegistryConfig, RegistryError, Scanner};

/// The registry scanner configuration the flags describe; the cache defaults to
/// `<work_dir>/registry-cache`.
#[must_use]
pub fn registry_config(args: &AutomationArgs, work_dir: &Path) -> RegistryConfig {
    RegistryConfig {
        rps: args.registry_rps,
        burst: args.registry_burst,
        insecure_hosts: args.registry_insecure_host.clone(),
        platform: args.registry_platform.clone(),
        use_labels: args.registry_use_labels.clone(),
        include_images: args.registry_include_image.clone(),
        exclude_images: args.registry_exclude_image.clone(),
        cache_dir: args
            .registry_cache_dir
            .clone()
            .unwrap_or_else(|| work_dir.join("registry-cache")),
        docker_config: args.docker_config.clone(),
        poll_interval: args.registry_scan_interval.0,
        ..RegistryConfig::default()
    }
}

/// Builds the scanner (loading its cache, registering its metrics with the agent's).
///
/// # Errors
///
/// [`RegistryError`] when a glob or the `--docker-config` file is unusable.
pub fn scanner(
    args: &AutomationArgs,
    work_dir: &Path,
    metrics: &Metrics,
) -> Result<Scanner, RegistryError> {
    Scanner::new(registry_config(args, work_dir), metrics.registry())
}

/// The running automation tasks.
pub struct Service {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Service {
    /// Spawns the scan loop and the automation loop. After a run that pushed a commit the
    /// sync loop is woken so the change is applied at once; each run's workloads and errors go
    /// to the API's state and `flux_automation_runs_total`.
    #[must_use]
    pub fn start(
        scanner: Scanner,
        state: Arc<AgentState>,
        mirror: Arc<Mutex<Mirror>>,
        client: kube::Client,
        config: AutomationConfig,
    ) -> Self {
        let (changed_tx, changed_rx) = tokio::sync::mpsc::unbounded_channel();
        let scan = tokio::spawn(scanner.clone().run(changed_tx, std::future::pending()));
        let automator = Automator {
            mirror,
            scanner,
            client,
            config,
            state: Arc::clone(&state),
        };
        let wake = Arc::new(tokio::sync::Notify::new());
        let report_state = Arc::clone(&state);
        let automate = tokio::spawn(automator.run(
            changed_rx,
            wake,
            move |result: Result<RunReport, RunError>| {
                let success = if result.is_ok() { "true" } else { "false" };
                report_state
                    .metrics
                    .automation_runs
                    .with_label_values(&[success])
                    .inc();
                if let Ok(report) = result {
                    let pushed = report.commit.is_some();
                    let shown = status::statuses(report.workloads, &report.errors);
                    *crate::api::lock(&report_state.workloads) = shown;
                    if pushed {
                        report_state.wake.notify_one();
                    }
                }
            },
        ));
        Self {
            tasks: vec![scan, automate],
        }
    }

    /// Stops the tasks.
    pub fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The settings of automation runs for the agent's flags.
#[must_use]
pub fn automation_config(
    args: &AutomationArgs,
    paths: Vec<String>,
    load_options: LoadOptions,
    work_dir: &Path,
) -> AutomationConfig {
    AutomationConfig {
        paths,
        load_options,
        ci_skip: args.ci_skip().map(str::to_owned),
        export_dir: crate::automation::run::export_dir(work_dir),
        interval: args.automation_interval.0,
    }
}
