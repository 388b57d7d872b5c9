//! Per-folder bookkeeping and the final report.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// How one spec file went.
pub enum Outcome {
    Passed,
    Skipped(String),
    Failed(String),
}

#[derive(Default)]
struct Folder {
    ran: usize,
    passed: usize,
    skipped: usize,
}

#[derive(Default)]
pub struct Report {
    folders: BTreeMap<String, Folder>,
    skips: Vec<(String, String)>,
    failures: Vec<(String, String)>,
}

impl Report {
    pub fn record(&mut self, folder: &str, file: &str, outcome: Outcome) {
        let entry = self.folders.entry(folder.to_owned()).or_default();
        match outcome {
            Outcome::Passed => {
                entry.ran += 1;
                entry.passed += 1;
            }
            Outcome::Skipped(reason) => {
                entry.skipped += 1;
                self.skips.push((file.to_owned(), reason));
            }
            Outcome::Failed(reason) => {
                entry.ran += 1;
                self.failures.push((file.to_owned(), reason));
            }
        }
    }

    /// A failure that belongs to no file (a missing folder, say).
    pub fn fail(&mut self, what: &str, reason: String) {
        self.failures.push((what.to_owned(), reason));
    }

    pub fn text(&self) -> String {
        let mut out = String::from("spec conformance (ran / passed / skipped):\n");
        let (mut ran, mut passed, mut skipped) = (0, 0, 0);
        for (name, f) in &self.folders {
            let _ = writeln!(out, "  {name:<62} {:>4} {:>4} {:>4}", f.ran, f.passed, f.skipped);
            ran += f.ran;
            passed += f.passed;
            skipped += f.skipped;
        }
        let _ = writeln!(out, "  {:<62} {ran:>4} {passed:>4} {skipped:>4}", "TOTAL");
        if !self.skips.is_empty() {
            let _ = writeln!(out, "skipped files:");
            for (file, reason) in &self.skips {
                let _ = writeln!(out, "  {file}: {reason}");
            }
        }
        if !self.failures.is_empty() {
            let _ = writeln!(out, "FAILED ({}):", self.failures.len());
            for (file, reason) in &self.failures {
                let _ = writeln!(out, "  {file}: {reason}");
            }
        }
        out
    }

    pub fn failed(&self) -> bool {
        !self.failures.is_empty()
    }
}
