//! `gregor topics reassign`: moves partition replicas between brokers of a
//! ZooKeeper-mode cluster by writing `/admin/reassign_partitions`, which
//! the controller carries out (spec: CLU-90 … CLU-92).

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::cluster::znodes::{self, ReassignmentEntry, ReassignmentZnode};
use crate::controller::admin;

/// Arguments of `gregor topics reassign`.
#[derive(Debug, clap::Args)]
pub struct ReassignArgs {
    /// ZooKeeper connect string, `HOST:PORT[,HOST:PORT…][/chroot]`, as in the
    /// brokers' `zookeeper.connect`.
    #[arg(long)]
    pub zookeeper: String,
    /// Topic of the partition to move.
    #[arg(long, requires_all = ["partition", "replicas"], conflicts_with = "reassignment_json_file")]
    pub topic: Option<String>,
    /// Partition to move.
    #[arg(long)]
    pub partition: Option<i32>,
    /// Target replicas, preferred leader first: `4,2,3`.
    #[arg(long, value_delimiter = ',')]
    pub replicas: Vec<i32>,
    /// A reassignment plan in Kafka's JSON format:
    /// `{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[4,2,3]}]}`.
    #[arg(long, value_name = "FILE")]
    pub reassignment_json_file: Option<std::path::PathBuf>,
    /// Wait until the controller has finished the moves.
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits, in milliseconds.
    #[arg(long, default_value_t = 300_000)]
    pub timeout_ms: u64,
}

impl ReassignArgs {
    /// The requested moves.
    fn entries(&self) -> anyhow::Result<Vec<ReassignmentEntry>> {
        if let Some(path) = &self.reassignment_json_file {
            let text =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let plan: ReassignmentZnode =
                znodes::decode(&path.display().to_string(), &text).map_err(anyhow::Error::from)?;
            return Ok(plan.partitions);
        }
        match (&self.topic, self.partition) {
            (Some(topic), Some(partition)) if !self.replicas.is_empty() => {
                Ok(vec![ReassignmentEntry {
                    topic: topic.clone(),
                    partition,
                    replicas: self.replicas.clone(),
                }])
            }
            _ => bail!("give --topic, --partition and --replicas, or --reassignment-json-file"),
        }
    }
}

/// Runs `gregor topics reassign`.
pub async fn reassign(args: ReassignArgs) -> anyhow::Result<()> {
    let entries = args.entries()?;
    let client = zookeeper_client::Client::connect(&args.zookeeper)
        .await
        .with_context(|| format!("connecting to ZooKeeper at {}", args.zookeeper))?;
    let registered: Vec<i32> = match client.list_children(znodes::BROKER_IDS).await {
        Ok(ids) => ids.iter().filter_map(|i| i.parse().ok()).collect(),
        Err(zookeeper_client::Error::NoNode) => Vec::new(),
        Err(err) => return Err(err.into()),
    };
    for e in &entries {
        let missing: Vec<String> = e
            .replicas
            .iter()
            .filter(|r| !registered.contains(r))
            .map(i32::to_string)
            .collect();
        if !missing.is_empty() {
            bail!(
                "{}-{}: broker(s) {} not registered (live brokers: {registered:?})",
                e.topic,
                e.partition,
                missing.join(",")
            );
        }
        let path = znodes::topic_path(&e.topic);
        let (data, _) = match client.get_data(&path).await {
            Ok(d) => d,
            Err(zookeeper_client::Error::NoNode) => bail!("topic {} does not exist", e.topic),
            Err(err) => return Err(err.into()),
        };
        let t: znodes::TopicZnode = znodes::decode(&path, &data)?;
        if !t.partitions.contains_key(&e.partition.to_string()) {
            bail!("topic {} has no partition {}", e.topic, e.partition);
        }
    }
    admin::request_reassignment(&client, &entries).await?;
    let mut out = std::io::stdout().lock();
    for e in &entries {
        let list: Vec<String> = e.replicas.iter().map(i32::to_string).collect();
        writeln!(
            out,
            "Reassignment of {}-{} to [{}] requested.",
            e.topic,
            e.partition,
            list.join(",")
        )?;
    }
    drop(out);
    if args.wait {
        admin::wait_for_reassignment(&client, &entries, Duration::from_millis(args.timeout_ms))
            .await?;
        writeln!(std::io::stdout().lock(), "Reassignment complete.")?;
    }
    Ok(())
}
