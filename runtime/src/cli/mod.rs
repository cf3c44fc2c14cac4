//! Command-line interface of the `gregor` binary (clap).
//!
//! `gregor broker [--config FILE] [--override key=value]…` runs a broker;
//! with no arguments it is the embedded single-node default (listener
//! `127.0.0.1:9092`, data under `./data`). `gregor topics`, `gregor produce`
//! and `gregor consume` drive a broker through the native client.

pub mod groups;
pub mod perf;
pub mod tools;
pub mod topics;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::server::Server;

/// Gregor: a Kafka-compatible commit log.
#[derive(Debug, Parser)]
#[command(name = "gregor", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a broker until SIGTERM or SIGINT.
    Broker(BrokerArgs),
    /// Create, list, describe or delete topics.
    Topics {
        /// Broker addresses, comma-separated (any broker of the cluster).
        #[arg(long, short = 'b', global = true, default_value = tools::DEFAULT_BOOTSTRAP)]
        bootstrap_server: String,
        /// What to do.
        #[command(subcommand)]
        action: tools::TopicsCmd,
    },
    /// Produce lines from stdin as records.
    Produce {
        /// Broker addresses, comma-separated (any broker of the cluster).
        #[arg(long, short = 'b', global = true, default_value = tools::DEFAULT_BOOTSTRAP)]
        bootstrap_server: String,
        /// Options.
        #[command(flatten)]
        args: tools::ProduceArgs,
    },
    /// Print records of a topic, one per line.
    Consume {
        /// Broker addresses, comma-separated (any broker of the cluster).
        #[arg(long, short = 'b', global = true, default_value = tools::DEFAULT_BOOTSTRAP)]
        bootstrap_server: String,
        /// Options.
        #[command(flatten)]
        args: tools::ConsumeArgs,
    },
    /// List, describe, reset the offsets of, or delete consumer groups.
    Groups {
        /// Broker addresses, comma-separated (any broker of the cluster).
        #[arg(long, short = 'b', global = true, default_value = tools::DEFAULT_BOOTSTRAP)]
        bootstrap_server: String,
        /// What to do.
        #[command(subcommand)]
        action: groups::GroupsCmd,
    },
    /// Load generators: produce or consume as fast as allowed and report
    /// throughput and latency.
    #[command(subcommand)]
    Perf(perf::PerfCmd),
}

/// Arguments of `gregor broker`.
#[derive(Debug, clap::Args)]
pub struct BrokerArgs {
    /// A Kafka-style server.properties file.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Set a config key, overriding the file (repeatable): --override key=value.
    #[arg(long = "override", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

/// Logs go to stderr; `RUST_LOG` selects the level (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Broker(args) => run_broker(args),
        Command::Topics {
            bootstrap_server,
            action,
        } => client_runtime()?.block_on(tools::topics(&bootstrap_server, action)),
        Command::Produce {
            bootstrap_server,
            args,
        } => client_runtime()?.block_on(tools::produce(&bootstrap_server, args)),
        Command::Consume {
            bootstrap_server,
            args,
        } => client_runtime()?.block_on(tools::consume(&bootstrap_server, args)),
        Command::Groups {
            bootstrap_server,
            action,
        } => client_runtime()?.block_on(groups::groups(&bootstrap_server, action)),
        Command::Perf(cmd) => client_runtime()?.block_on(perf::run(cmd)),
    }
}

fn client_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn run_broker(args: BrokerArgs) -> anyhow::Result<()> {
    // spec: PRO-41 — a bad key stops startup before anything is opened.
    let config = BrokerConfig::load(args.config.as_deref(), &args.overrides)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gregor")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let broker = Arc::new(Broker::open(config)?);
        let server = match Server::bind(broker.clone()).await {
            Ok(s) => s,
            Err(e) => {
                // Nothing was served: the logs are closed cleanly again so
                // the next start needs no recovery (spec: PRO-30).
                let b = broker.clone();
                let _ = tokio::task::spawn_blocking(move || b.shutdown()).await;
                return Err(anyhow::Error::new(e).context("starting the broker"));
            }
        };
        tracing::info!(
            broker_id = broker.config.broker_id,
            addr = %server.local_addr(),
            "gregor broker started"
        );
        server.run(shutdown_signal()).await;
        Ok(())
    })
}

/// Resolves on SIGTERM or SIGINT (spec: PRO-30).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only SIGINT stops the broker");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The one-line message for an error that ends a command: the error and
/// each cause whose text it does not already carry (errors that embed
/// their source would otherwise print it twice).
#[must_use]
pub fn error_message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.is_empty() {
            out = text;
        } else if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let e = anyhow::Error::new(io).context("cannot read /x: No such file");
        assert_eq!(error_message(&e), "cannot read /x: No such file");
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let e = anyhow::Error::new(io).context("cannot read /x");
        assert_eq!(error_message(&e), "cannot read /x: No such file");
    }
}
