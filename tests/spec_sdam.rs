//! MongoDB specification conformance for the pure SDAM and server-selection layer.
//!
//! Runs every `*.json` file under the spec-test root (env `MONGOPLEX_SPEC_TESTS`, default
//! `../shared/spec-tests` next to the crate) in:
//! `sdam/{rs,single,sharded,errors,monitoring,load-balanced}`,
//! `server-selection/{server_selection/**,rtt,in_window}` and `max-staleness/**`.
//! The files are read in place, never copied into this repository (their licence).
//! Prints ran/passed/skipped per folder, names every skipped file with its reason, and fails
//! listing every failing file.

#[path = "spec_sdam/ejson.rs"]
mod ejson;
#[path = "spec_sdam/events.rs"]
mod events;
#[path = "spec_sdam/outcome.rs"]
mod outcome;
#[path = "spec_sdam/report.rs"]
mod report;
#[path = "spec_sdam/sdam_files.rs"]
mod sdam_files;
#[path = "spec_sdam/selection_files.rs"]
mod selection_files;
#[path = "spec_sdam/uri.rs"]
mod uri;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use report::{Outcome, Report};
use serde_json::Value;

type Runner = fn(&Value) -> Outcome;

/// (folder under the root, recurse into subfolders, required, runner)
const SUITES: [(&str, bool, bool, Runner); 10] = [
    ("sdam/rs", false, true, sdam_files::run),
    ("sdam/single", false, true, sdam_files::run),
    ("sdam/sharded", false, true, sdam_files::run),
    ("sdam/errors", false, true, sdam_files::run),
    ("sdam/monitoring", false, true, sdam_files::run),
    ("sdam/load-balanced", false, false, sdam_files::run),
    (
        "server-selection/server_selection",
        true,
        true,
        selection_files::run_selection,
    ),
    ("server-selection/rtt", false, true, selection_files::run_rtt),
    (
        "server-selection/in_window",
        false,
        true,
        selection_files::run_in_window,
    ),
    ("max-staleness", true, true, selection_files::run_selection),
];

fn spec_root() -> PathBuf {
    match std::env::var_os("MONGOPLEX_SPEC_TESTS") {
        Some(root) => PathBuf::from(root),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/spec-tests"),
    }
}

#[test]
fn spec_conformance() {
    let root = spec_root();
    if !root.is_dir() {
        eprintln!(
            "\n*** SKIPPED: spec tests not found at {} (set MONGOPLEX_SPEC_TESTS) ***\n",
            root.display()
        );
        return;
    }
    let mut report = Report::default();
    for (folder, recurse, required, runner) in SUITES {
        let dir = root.join(folder);
        if !dir.is_dir() {
            if required {
                report.fail(folder, format!("folder missing under {}", root.display()));
            }
            continue;
        }
        let mut files = Vec::new();
        collect_json(&dir, recurse, &mut files);
        if files.is_empty() && required {
            report.fail(folder, "no .json files".into());
        }
        for file in files {
            let rel = file.strip_prefix(&root).unwrap_or(&file);
            let parent = rel.parent().map_or(String::new(), |p| p.display().to_string());
            let outcome = run_file(&file, runner);
            report.record(&parent, &rel.display().to_string(), outcome);
        }
    }
    let text = report.text();
    println!("{text}");
    assert!(!report.failed(), "spec conformance failures:\n{text}");
}

fn run_file(path: &Path, runner: Runner) -> Outcome {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return Outcome::Failed(format!("cannot read: {e}")),
    };
    let json: Value = match serde_json::from_str(&text) {
        Ok(j) => j,
        Err(e) => return Outcome::Failed(format!("not JSON: {e}")),
    };
    catch_unwind(AssertUnwindSafe(|| runner(&json))).unwrap_or_else(|_| Outcome::Failed("panicked".into()))
}

fn collect_json(dir: &Path, recurse: bool, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            if recurse {
                collect_json(&path, recurse, out);
            }
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}
