#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Commits written into the mirror and pushed to a real bare repository (`file://`): the remote
//! branch moves, other files and modes are kept, and a push after someone else's commit is
//! rejected (never forced) until the change is re-applied on the new head.

use std::path::Path;
use std::time::Duration;

use git_mirror::{FileChange, GitConfig, Mirror, MirrorMode, PushOutcome};
use test_support::{BareRepo, TempDir, run_git};

fn mirror(tmp: &Path, repo: &BareRepo) -> Mirror {
    let work = tmp.join("work");
    std::fs::create_dir_all(&work).unwrap();
    Mirror::new(
        GitConfig {
            url: repo.file_url(),
            branch: "main".to_owned(),
            mode: MirrorMode::Branch,
            timeout: Duration::from_secs(20),
            user: "Flux Bot".to_owned(),
            email: "bot@example.com".to_owned(),
            ..GitConfig::default()
        },
        &work,
    )
}

fn show(repo: &BareRepo, rev_path: &str) -> String {
    run_git(repo.path(), &["show", rev_path])
        .trim_end()
        .to_owned()
}

#[test]
fn a_commit_is_pushed_with_the_configured_author_and_only_the_changed_file() {
    let tmp = TempDir::new("commit-push");
    let repo = BareRepo::new(tmp.path(), "config.git", "main");
    let first = repo.commit(
        &[
            ("apps/a.yaml", "image: app:1.0\n"),
            ("apps/b.yaml", "kind: B\n"),
        ],
        &[],
        "first",
    );
    let mut mirror = mirror(tmp.path(), &repo);
    assert_eq!(mirror.refresh().unwrap(), first);

    let commit = mirror
        .commit_files(
            &first,
            &[FileChange {
                path: "apps/a.yaml".to_owned(),
                contents: b"image: app:1.1\n".to_vec(),
            }],
            "Auto-release app:1.1\n\n[ci skip]",
        )
        .unwrap();
    assert_eq!(mirror.push_branch(&commit).unwrap(), PushOutcome::Pushed);

    assert_eq!(repo.head().unwrap(), commit);
    assert_eq!(show(&repo, "main:apps/a.yaml"), "image: app:1.1");
    assert_eq!(show(&repo, "main:apps/b.yaml"), "kind: B");
    let log = run_git(
        repo.path(),
        &["log", "-1", "--format=%an <%ae>|%cn|%P|%B", "main"],
    );
    assert_eq!(
        log.trim(),
        format!("Flux Bot <bot@example.com>|Flux Bot|{first}|Auto-release app:1.1\n\n[ci skip]")
    );
}

#[test]
fn a_push_after_a_concurrent_commit_is_rejected_then_lands_on_top() {
    let tmp = TempDir::new("commit-race");
    let repo = BareRepo::new(tmp.path(), "config.git", "main");
    let first = repo.commit(&[("a.yaml", "tag: 1\n")], &[], "first");
    let mut mirror = mirror(tmp.path(), &repo);
    mirror.refresh().unwrap();

    let theirs = repo.commit(&[("b.yaml", "theirs\n")], &[], "someone else");
    let ours = mirror
        .commit_files(
            &first,
            &[FileChange {
                path: "a.yaml".to_owned(),
                contents: b"tag: 2\n".to_vec(),
            }],
            "ours",
        )
        .unwrap();
    assert!(matches!(
        mirror.push_branch(&ours).unwrap(),
        PushOutcome::Rejected { .. }
    ));
    assert_eq!(repo.head().unwrap(), theirs, "nothing was forced");

    let head = mirror.refresh().unwrap();
    assert_eq!(head, theirs);
    let ours = mirror
        .commit_files(
            &head,
            &[FileChange {
                path: "a.yaml".to_owned(),
                contents: b"tag: 2\n".to_vec(),
            }],
            "ours",
        )
        .unwrap();
    assert_eq!(mirror.push_branch(&ours).unwrap(), PushOutcome::Pushed);
    assert_eq!(show(&repo, "main:a.yaml"), "tag: 2");
    assert_eq!(show(&repo, "main:b.yaml"), "theirs");
    assert_eq!(run_git(repo.path(), &["rev-parse", "main^"]).trim(), theirs);
}

#[test]
fn an_empty_change_set_is_refused() {
    let tmp = TempDir::new("commit-empty");
    let repo = BareRepo::new(tmp.path(), "config.git", "main");
    let first = repo.commit(&[("a.yaml", "x\n")], &[], "first");
    let mut mirror = mirror(tmp.path(), &repo);
    mirror.refresh().unwrap();
    assert!(mirror.commit_files(&first, &[], "nothing").is_err());
}
