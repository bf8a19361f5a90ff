//! docs/ci.md, run (issue 17, item 8): the workflow and the files the page shows are read out
//! of it, and every `run:` step is run in order with bash as GitHub Actions runs it (`-eo
//! pipefail`; a step without `if:` only while nothing has failed, `if: failure()` only after a
//! failure, `if: always()` always), so the page cannot drift from what works. Two runs: as
//! written (everything passes, the reports are there, the failure-only steps are skipped, the
//! cluster is gone afterwards), and with a failing check added to the page's checks file (the
//! DNS step fails, the conformance step is skipped, the logs are exported, the cluster is
//! still deleted). Replaced, as the page says: the `install` step (the `minikind` under test is
//! on PATH) and the `build` step (the image under test is imported from the host's busybox);
//! the cluster and image names are the test's own. `uses:` steps are not run: an upload's
//! `path` must exist when it would run. Whatever happens, the test deletes its cluster and
//! image.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use minikind_test_support::images::busybox_image;
use minikind_test_support::{docker, minikind, minikind_bin, test_kubeconfig, unique_name};
use serde_yaml::Value;

/// The page, from the workspace's docs.
fn page() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/ci.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The files the page shows: a line ``File `PATH`…`` and the fenced block after it.
fn files(page: &str) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let mut lines = page.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.strip_prefix("File `") else {
            continue;
        };
        let path = rest.split('`').next().unwrap().to_string();
        let fence = lines
            .by_ref()
            .find(|l| l.starts_with("```"))
            .unwrap_or_else(|| panic!("no block after `File {path}`"));
        assert!(fence.len() > 3, "the block of {path} names no language");
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        files.insert(path, body.join("\n") + "\n");
    }
    files
}

/// One step of the workflow.
#[derive(Debug)]
struct Step {
    label: String,
    id: Option<String>,
    condition: Option<String>,
    run: Option<String>,
    uses: Option<String>,
    with_path: Option<String>,
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

/// The job's environment and steps (the workflow has one job).
fn job(workflow: &str) -> (BTreeMap<String, String>, Vec<Step>) {
    let wf: Value = serde_yaml::from_str(workflow).expect("the workflow is YAML");
    let jobs = wf["jobs"].as_mapping().expect("jobs");
    assert_eq!(jobs.len(), 1, "one job");
    let job = jobs.values().next().unwrap();
    let env = job["env"]
        .as_mapping()
        .expect("the job's env")
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().unwrap().to_string(),
                v.as_str().unwrap().to_string(),
            )
        })
        .collect();
    let steps = job["steps"]
        .as_sequence()
        .expect("steps")
        .iter()
        .map(|s| Step {
            label: text(s, "name")
                .or_else(|| text(s, "uses"))
                .expect("a step has a name or uses"),
            id: text(s, "id"),
            condition: text(s, "if"),
            run: text(s, "run"),
            uses: text(s, "uses"),
            with_path: s.get("with").and_then(|w| text(w, "path")),
        })
        .collect();
    (env, steps)
}

/// What became of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ran {
    Passed,
    Failed(String),
    Skipped,
    Replaced,
}

/// Deletes the test's cluster and image, also when an assertion failed half-way.
struct Cleanup {
    cluster: String,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let r = minikind(&["delete", "cluster", "--name", &self.cluster]);
        if !r.ok {
            eprintln!("cleanup of {}: {}", self.cluster, r.stderr);
        }
        let _ = docker(&["rmi", &self.image]);
    }
}

/// Runs the job in a fresh folder holding the page's files; gives each step's fate and the
/// folder.
fn run_job(
    files: &BTreeMap<String, String>,
    cluster: &str,
    image: &str,
) -> (Vec<(String, Ran)>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    for (path, body) in files {
        let at = dir.path().join(path);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::fs::write(at, body).unwrap();
    }
    let (mut env, steps) = job(&files[".github/workflows/dns.yml"]);
    assert!(
        env.contains_key("CLUSTER") && env.contains_key("IMAGE"),
        "{env:?}"
    );
    env.insert("CLUSTER".into(), cluster.into());
    env.insert("IMAGE".into(), image.into());
    let bin_dir: PathBuf = minikind_bin().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let mut failed = false;
    let mut ran = Vec::new();
    for step in steps {
        let runs = match step.condition.as_deref() {
            None => !failed,
            Some("failure()") => failed,
            Some("always()") => true,
            Some(other) => panic!(
                "step {:?}: condition {other:?} is not one the test knows",
                step.label
            ),
        };
        let fate = if !runs {
            Ran::Skipped
        } else if step.id.as_deref() == Some("install") {
            assert!(bin_dir.join("minikind").is_file());
            Ran::Replaced
        } else if step.id.as_deref() == Some("build") {
            busybox_image(image, 0);
            Ran::Replaced
        } else if let Some(script) = &step.run {
            let out = Command::new("bash")
                .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", script])
                .current_dir(dir.path())
                .envs(&env)
                .env("PATH", &path)
                .env("KUBECONFIG", test_kubeconfig())
                .output()
                .expect("running bash");
            if out.status.success() {
                Ran::Passed
            } else {
                failed = true;
                Ran::Failed(format!(
                    "{}\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        } else {
            let uses = step.uses.as_deref().unwrap();
            if uses.starts_with("actions/upload-artifact") {
                let p = step.with_path.as_deref().expect("an upload names its path");
                assert!(
                    dir.path().join(p).exists(),
                    "step {:?} would upload {p}, which the job did not make",
                    step.label
                );
            } else {
                assert!(
                    uses.starts_with("actions/checkout"),
                    "unknown action {uses}"
                );
            }
            Ran::Replaced
        };
        ran.push((step.label, fate));
    }
    (ran, dir)
}

fn fate<'a>(ran: &'a [(String, Ran)], label: &str) -> &'a Ran {
    &ran.iter()
        .find(|(l, _)| l == label)
        .unwrap_or_else(|| panic!("no step {label:?} in {ran:?}"))
        .1
}

fn cluster_exists(name: &str) -> bool {
    let r = minikind(&["get", "clusters"]);
    assert!(r.ok, "{}", r.stderr);
    r.stdout.lines().any(|l| l.trim() == name)
}

#[test]
fn the_ci_page_runs_as_written_and_exports_logs_on_failure() {
    let page = page();
    let files = files(&page);
    for f in [
        ".github/workflows/dns.yml",
        "ci/cluster.yaml",
        "ci/app.yaml",
        "ci/dns-checks.yaml",
    ] {
        assert!(
            files.contains_key(f),
            "the page shows no {f}: {:?}",
            files.keys()
        );
    }

    // As written: every step passes.
    let cluster = unique_name("e2e-cidoc");
    let image = format!("{}:ci", unique_name("minikind-e2e-app"));
    let _cleanup = Cleanup {
        cluster: cluster.clone(),
        image: image.clone(),
    };
    let (ran, dir) = run_job(&files, &cluster, &image);
    for (label, f) in &ran {
        assert!(!matches!(f, Ran::Failed(_)), "step {label:?} failed: {f:?}");
    }
    for label in [
        "DNS checks",
        "Kubernetes e2e DNS tests",
        "Delete the cluster",
    ] {
        assert_eq!(fate(&ran, label), &Ran::Passed, "{label}");
    }
    assert_eq!(fate(&ran, "Export the cluster's logs"), &Ran::Skipped);
    for report in ["reports/dns-test.xml", "reports/dns-conformance.xml"] {
        let xml = std::fs::read_to_string(dir.path().join(report)).unwrap();
        assert!(xml.contains("failures=\"0\""), "{report}: {xml}");
    }
    assert!(
        !cluster_exists(&cluster),
        "the job's delete step left {cluster}"
    );

    // A failing check: the DNS step fails, the rest is skipped, the logs are exported.
    let mut broken = files.clone();
    broken
        .get_mut("ci/dns-checks.yaml")
        .unwrap()
        .push_str("- name: www.example.test\n  timeout: 3s\n  expect: {answers: [192.0.2.99]}\n");
    let cluster2 = unique_name("e2e-cidoc");
    let _cleanup2 = Cleanup {
        cluster: cluster2.clone(),
        image: image.clone(),
    };
    let (ran, dir) = run_job(&broken, &cluster2, &image);
    let Ran::Failed(out) = fate(&ran, "DNS checks") else {
        panic!("the DNS step did not fail: {ran:?}");
    };
    assert!(out.contains("expected answers [192.0.2.99]"), "{out}");
    assert_eq!(fate(&ran, "Kubernetes e2e DNS tests"), &Ran::Skipped);
    assert_eq!(fate(&ran, "Export the cluster's logs"), &Ran::Passed);
    assert_eq!(fate(&ran, "Delete the cluster"), &Ran::Passed);
    let logs = dir.path().join("minikind-logs");
    let entries: Vec<String> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        entries.iter().any(|e| e.contains("control-plane")),
        "{entries:?}"
    );
    let xml = std::fs::read_to_string(dir.path().join("reports/dns-test.xml")).unwrap();
    assert!(xml.contains("failures=\"1\""), "{xml}");
    assert!(
        !cluster_exists(&cluster2),
        "the job's delete step left {cluster2}"
    );
}
