//! Conformance runner for the MongoDB connection-string specs.
//!
//! Reads every `*.json` file under `$MONGOPLEX_SPEC_TESTS/connection-string`
//! and `$MONGOPLEX_SPEC_TESTS/uri-options` (default `../shared/spec-tests`
//! next to the crate) and checks each case against
//! [`ConnectionString::parse`]: `valid`, `warning`, `hosts`, `auth` and
//! `options`, where a null field means "no assertion" (the specs' README).
//! The same root's `auth/` folder (authentication spec, `credential` format)
//! is checked by a second test. The JSON files are not vendored (license);
//! without them the tests print `SKIPPED` and pass.
//!
//! Run with `cargo test --test spec_uri -- --nocapture` to see the counts.
//!
//! The per-format checks live in `tests/spec_uri_support/`: `uri_options` for the
//! connection-string and uri-options files, `auth` for the authentication spec, and
//! `spec_view` for the parsed options as the spec files write them.

#[path = "spec_uri_support/auth.rs"]
mod auth;
#[path = "spec_uri_support/spec_view.rs"]
mod spec_view;
#[path = "spec_uri_support/uri_options.rs"]
mod uri_options;

use std::path::{Path, PathBuf};

use auth::check_auth_case;
use mongoplex::config::uri::ConnectionString;
use serde_json::Value;
use spec_view::{loose_eq, normalize, spec_view};
use uri_options::check_uri_case;

fn spec_root() -> PathBuf {
    std::env::var_os("MONGOPLEX_SPEC_TESTS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/spec-tests"),
        PathBuf::from,
    )
}

enum Outcome {
    Pass,
    Skip(String),
    Fail(Vec<String>),
}

#[derive(Default)]
struct Tally {
    files: usize,
    cases: usize,
    passed: usize,
    skipped: Vec<String>,
    failures: Vec<String>,
}

impl Tally {
    fn record(&mut self, name: String, outcome: Outcome) {
        self.cases += 1;
        match outcome {
            Outcome::Pass => self.passed += 1,
            Outcome::Skip(reason) => self.skipped.push(format!("{name}: {reason}")),
            Outcome::Fail(why) => self
                .failures
                .push(format!("{name}:\n      {}", why.join("\n      "))),
        }
    }

    fn report(&self, folder: &str) {
        eprintln!(
            "spec {folder}: {} files, {} cases run, {} passed, {} failed, {} skipped",
            self.files,
            self.cases,
            self.passed,
            self.failures.len(),
            self.skipped.len()
        );
        for skip in &self.skipped {
            eprintln!("  SKIPPED {skip}");
        }
    }
}

/// Runs `check` on every case of every JSON file under `root/folder`.
fn run_folder(root: &Path, folder: &str, check: fn(&Value) -> Outcome) -> Option<Tally> {
    let dir = root.join(folder);
    if !dir.is_dir() {
        eprintln!("SKIPPED: spec tests not found at {}", dir.display());
        return None;
    }
    let mut tally = Tally::default();
    let mut files = Vec::new();
    if let Err(e) = collect_json(&dir, &mut files) {
        tally
            .failures
            .push(format!("{}: cannot list: {e}", dir.display()));
    }
    files.sort();
    for file in files {
        tally.files += 1;
        let label = file.strip_prefix(&dir).unwrap_or(&file).display().to_string();
        let tests = std::fs::read_to_string(&file)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str::<Value>(&text).map_err(|e| e.to_string()))
            .and_then(|doc| match doc.get("tests") {
                Some(Value::Array(tests)) => Ok(tests.clone()),
                _ => Err("no \"tests\" array".to_owned()),
            });
        match tests {
            Ok(tests) => {
                for case in &tests {
                    let description = case.get("description").and_then(Value::as_str).unwrap_or("?");
                    tally.record(format!("{folder}/{label}: {description}"), check(case));
                }
            }
            Err(e) => tally.failures.push(format!("{folder}/{label}: unreadable: {e}")),
        }
    }
    tally.report(folder);
    Some(tally)
}

fn collect_json(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_json(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    Ok(())
}

fn assert_no_failures(tallies: &[Tally]) {
    let failures: Vec<&String> = tallies.iter().flat_map(|t| &t.failures).collect();
    assert!(
        failures.is_empty(),
        "{} spec case(s) failed:\n  {}",
        failures.len(),
        failures
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}

#[test]
fn connection_string_and_uri_options_specs() {
    let root = spec_root();
    if !root.is_dir() {
        eprintln!("SKIPPED: spec tests not found at {}", root.display());
        return;
    }
    let tallies: Vec<Tally> = ["connection-string", "uri-options"]
        .iter()
        .filter_map(|folder| run_folder(&root, folder, check_uri_case))
        .collect();
    assert_no_failures(&tallies);
}

#[test]
fn auth_connection_string_spec() {
    let root = spec_root();
    if !root.is_dir() {
        eprintln!("SKIPPED: spec tests not found at {}", root.display());
        return;
    }
    let tallies: Vec<Tally> = run_folder(&root, "auth", check_auth_case).into_iter().collect();
    assert_no_failures(&tallies);
}

#[test]
fn spec_view_and_comparison_helpers() {
    let cs = ConnectionString::parse(
        "mongodb://h/?compressors=zlib,snappy&readPreference=nearest&readPreferenceTags=dc:ny&w=2",
    )
    .expect("valid");
    let view = spec_view(&cs);
    let text = Value::Object(view.clone()).to_string();
    assert!(
        loose_eq(
            &normalize("compressors", &Value::from("zlib,snappy")),
            &view["compressors"]
        ),
        "{text}"
    );
    let legacy_tags = Value::Array(vec![Value::from("dc:ny")]);
    assert!(
        loose_eq(
            &normalize("readpreferencetags", &legacy_tags),
            &view["readpreferencetags"]
        ),
        "{text}"
    );
    assert!(loose_eq(&serde_json::json!(2.0), &view["w"]), "{text}");
    assert!(!loose_eq(&serde_json::json!(3), &view["w"]), "{text}");
}
