//! The `gregor` command: run a broker, administer topics.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = gregor_runtime::cli::Cli::parse();
    gregor_runtime::cli::init_tracing();
    match gregor_runtime::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gregor: {}", gregor_runtime::cli::error_message(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
