//! `cargo xtask demo`: the local demo on embedded defaults.
//!
//! The first, read-only part: reads a config repository (by default `examples/`) with the
//! `model` crate and prints what the agent and the operator will manage: every HelmRelease and
//! FluxHelmRelease resolved to its Helm release, every automated image with its tag filter, and
//! every manifest that could not be read. It starts nothing and changes nothing; the live part
//! (kube-sim, the agent, the Helm operator) is [`crate::demo_live`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use model::annotations::{Policies, annotations_of_manifest};
use model::release::ChartSource;
use model::{
    ChartRepoSettings, FluxHelmRelease, HelmRelease, ImageRef, OperatorDefaults,
    ReleaseDescription, find_images,
};
use serde::Deserialize as _;

/// Workload kinds whose pod template holds containers, and where the pod spec is.
const WORKLOADS: [(&str, &[&str]); 4] = [
    ("Deployment", &["spec", "template", "spec"]),
    ("StatefulSet", &["spec", "template", "spec"]),
    ("DaemonSet", &["spec", "template", "spec"]),
    (
        "CronJob",
        &["spec", "jobTemplate", "spec", "template", "spec"],
    ),
];

/// What the demo found in a config repository.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) files: usize,
    pub(crate) documents: usize,
    pub(crate) releases: usize,
    pub(crate) workloads: usize,
    pub(crate) automated_images: usize,
    pub(crate) lines: Vec<String>,
    pub(crate) errors: Vec<String>,
}

pub(crate) fn run(repo: &Path) -> anyhow::Result<()> {
    println!("demo: reading the config repository {}", repo.display());
    println!(
        "demo: nothing is applied yet; this is what the agent and the Helm operator will manage\n"
    );
    let report = scan(repo)?;
    for line in &report.lines {
        println!("{line}");
    }
    if !report.errors.is_empty() {
        println!("\nmanifests that could not be read (the rest is unaffected):");
        for error in &report.errors {
            println!("  {error}");
        }
    }
    println!(
        "\ndemo: {} files, {} documents: {} Helm releases, {} workloads, {} automated images, {} errors",
        report.files,
        report.documents,
        report.releases,
        report.workloads,
        report.automated_images,
        report.errors.len()
    );
    Ok(())
}

/// Reads every manifest under `repo`, skipping chart directories.
pub(crate) fn scan(repo: &Path) -> anyhow::Result<Report> {
    let mut files = Vec::new();
    collect_yaml_files(repo, &mut files)?;
    files.sort();
    let chart_repo = ChartRepoSettings::new(&format!("file://{}", repo.display()));
    let defaults = OperatorDefaults::default();
    let mut report = Report::default();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("failed to read {}", file.display()))?;
        let name = file
            .strip_prefix(repo)
            .unwrap_or(&file)
            .display()
            .to_string();
        report.files += 1;
        for (index, document) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let where_ = format!("{name} (document {})", index + 1);
            match serde_yaml::Value::deserialize(document) {
                Ok(serde_yaml::Value::Null) => {}
                Ok(value) => {
                    report.documents += 1;
                    if let Err(error) =
                        describe(&value, &where_, &chart_repo, &defaults, &mut report)
                    {
                        report.errors.push(format!("{where_}: {error}"));
                    }
                }
                Err(error) => report.errors.push(format!("{where_}: {error}")),
            }
        }
    }
    Ok(report)
}

fn collect_yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if dir.join("Chart.yaml").is_file() {
        return Ok(());
    }
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("failed to list {}", dir.display()))?
    {
        let path = entry?.path();
        if path.is_dir() {
            collect_yaml_files(&path, out)?;
        } else if path.file_name().is_some_and(|n| n == ".flux.yaml") {
            // Manifest generation config, not a manifest; the agent reads it with --manifest-generation.
            continue;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    Ok(())
}

fn describe(
    value: &serde_yaml::Value,
    where_: &str,
    chart_repo: &ChartRepoSettings,
    defaults: &OperatorDefaults,
    report: &mut Report,
) -> anyhow::Result<()> {
    let kind = value["kind"].as_str().context("the document has no kind")?;
    value["apiVersion"]
        .as_str()
        .context("the document has no apiVersion")?;
    let annotations = annotations_of_manifest(value)?;
    let policies = Policies::from_annotations(&annotations)?;
    match kind {
        "HelmRelease" => {
            let hr = HelmRelease::deserialize(value)?;
            let release = hr.to_release(defaults)?;
            release_lines(where_, &release, hr.spec.values.as_ref(), &policies, report);
        }
        "FluxHelmRelease" => {
            let fhr = FluxHelmRelease::deserialize(value)?;
            let release = fhr.to_release(chart_repo, defaults)?;
            release_lines(
                where_,
                &release,
                fhr.spec.values.as_ref(),
                &policies,
                report,
            );
        }
        _ => {
            if let Some((_, pod_spec)) = WORKLOADS.iter().find(|(k, _)| *k == kind) {
                workload_lines(where_, value, kind, pod_spec, &policies, report)?;
            }
        }
    }
    Ok(())
}

fn policy_summary(policies: &Policies) -> String {
    let mut text = String::new();
    text.push_str(if policies.automated {
        "automated"
    } else {
        "not automated"
    });
    if policies.locked {
        text.push_str(", locked");
        if let Some(message) = &policies.locked_msg {
            let _ = write!(text, " ({message})");
        }
    }
    text
}

fn image_line(
    container: &str,
    image: &ImageRef,
    location: &str,
    policies: &Policies,
    report: &mut Report,
) -> String {
    if policies.automated && !policies.locked {
        report.automated_images += 1;
    }
    format!(
        "    {container}: {image} at {location}, tag filter {}",
        policies.tag_filter(container)
    )
}

fn release_lines(
    where_: &str,
    release: &ReleaseDescription,
    values: Option<&model::Values>,
    policies: &Policies,
    report: &mut Report,
) {
    report.releases += 1;
    let chart = match &release.chart {
        ChartSource::Git(git) => format!("git {} ref {} path {}", git.url, git.git_ref, git.path),
        ChartSource::Repository(repo) => format!(
            "chart {} {} from {}",
            repo.name, repo.version, repo.repository
        ),
    };
    report.lines.push(format!("{} [{where_}]", release.owner));
    report.lines.push(format!(
        "  release {} in namespace {} with helm {}, {chart}",
        release.release_name,
        release.target_namespace,
        release.helm_version.as_str()
    ));
    report.lines.push(format!("  {}", policy_summary(policies)));
    let empty = model::Values::new();
    let found = find_images(&policies.image_paths, values.unwrap_or(&empty));
    for image in &found.images {
        let paths: Vec<String> = [
            &image.paths.registry,
            &Some(image.paths.repository.clone()),
            &image.paths.tag,
        ]
        .into_iter()
        .flatten()
        .map(|p| format!("spec.values.{p}"))
        .collect();
        let line = image_line(
            &image.container,
            &image.image,
            &paths.join(" + "),
            policies,
            report,
        );
        report.lines.push(line);
    }
    for problem in found.problems {
        report.errors.push(format!("{where_}: {problem}"));
    }
}

fn workload_lines(
    where_: &str,
    value: &serde_yaml::Value,
    kind: &str,
    pod_spec: &[&str],
    policies: &Policies,
    report: &mut Report,
) -> anyhow::Result<()> {
    report.workloads += 1;
    let name = value["metadata"]["name"].as_str().unwrap_or("?");
    let namespace = value["metadata"]["namespace"].as_str().unwrap_or("default");
    report.lines.push(format!(
        "{namespace}:{}/{name} [{where_}]",
        kind.to_ascii_lowercase()
    ));
    report.lines.push(format!("  {}", policy_summary(policies)));
    let spec = pod_spec.iter().fold(value, |v, key| &v[*key]);
    for list in ["initContainers", "containers"] {
        for container in spec[list].as_sequence().into_iter().flatten() {
            let name = container["name"]
                .as_str()
                .context("a container has no name")?;
            let image = container["image"]
                .as_str()
                .context("a container has no image")?;
            let image = ImageRef::parse(image)?;
            let line = image_line(
                name,
                &image,
                &format!("{list}[{name}].image"),
                policies,
                report,
            );
            report.lines.push(line);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_repository_reads_without_errors() {
        let report = scan(&crate::workspace_root().join("examples")).unwrap();
        assert!(report.errors.is_empty(), "{:#?}", report.errors);
        assert_eq!(report.releases, 3);
        assert_eq!(report.workloads, 1);
        // podinfo (1), podinfo-prod (init, app) and the app Deployment; redis is locked.
        assert_eq!(report.automated_images, 4);
        let text = report.lines.join("\n");
        assert!(
            text.contains("release dev-podinfo in namespace dev"),
            "{text}"
        );
        assert!(text.contains("init: quay.io/stefanprodan/podinfo:1.0.0 at spec.values.init.image, tag filter semver:~1.0"), "{text}");
        assert!(
            text.contains(
                "spec.values.image.registry + spec.values.image.repository + spec.values.image.tag"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_broken_manifest_is_reported_and_the_rest_still_read() {
        let dir = std::env::temp_dir().join(format!("xtask-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("mixed.yaml"),
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: a\n  annotations:\n    fluxcd.io/automated: true\n---\n\
             apiVersion: helm.fluxcd.io/v1\nkind: HelmRelease\nmetadata: {name: ok, namespace: dev}\n\
             spec:\n  chart: {repository: 'https://x', name: ok, version: 1.0.0}\n",
        )
        .unwrap();
        let report = scan(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
        assert!(
            report.errors[0].contains("mixed.yaml (document 1)"),
            "{:?}",
            report.errors
        );
        assert!(
            report.errors[0].contains("non-string value"),
            "{:?}",
            report.errors
        );
        assert_eq!(report.releases, 1);
    }
}
