//! `cargo bench --bench proxy -- [options]`: mongoplex against its upstream, side by side.
//! See tests/bench/README.md for the options and what each figure means.

mod harness;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let opts = harness::Options::parse();
    if !opts.bench {
        // `cargo test --benches` runs this binary without `--bench`: benchmarks are not
        // tests (tests/bench_smoke.rs keeps the harness from rotting).
        println!("mongoplex benchmark: run it with `cargo bench --bench proxy` (see tests/bench/README.md)");
        return ExitCode::SUCCESS;
    }
    match harness::run(&opts) {
        Ok(results) => {
            println!("{}", harness::report::markdown(&results));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mongoplex benchmark failed: {e}");
            ExitCode::FAILURE
        }
    }
}
