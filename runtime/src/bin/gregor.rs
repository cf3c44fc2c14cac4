//! The `gregor` command: run a broker, administer topics.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = gregor_runtime::cli::Cli::parse();
    gregor_runtime::cli::init_tracing();
    match gregor_runtime::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gregor: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
