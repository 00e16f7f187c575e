//! Benchmark driver for bench/ovsdb.sh: N single-element changes to one address set through
//! veg-ovsdb (writer) while a second client (watcher) monitors the table. Prints the total
//! time, and the commit → update-seen latency of each change (median, p99).
//!   usage: nb_bench REMOTE COUNT

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use veg_ovsdb::{Client, ClientConfig, Condition, Mutation, Operation, Remote, Value};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let remote = args.next().context("REMOTE")?;
    let count: usize = args.next().context("COUNT")?.parse()?;
    let config = |tables: &[&str]| -> Result<ClientConfig> {
        Ok(ClientConfig {
            remotes: Remote::parse_list(&remote)?,
            database: "OVN_Northbound".into(),
            leader_only: false,
            probe_interval: Duration::from_secs(30),
            monitor: tables.iter().map(|t| (t.to_string(), Vec::new())).collect(),
            tls: None,
            max_message: veg_ovsdb::jsonrpc::MAX_MESSAGE,
        })
    };
    let writer = Client::connect(config(&[])?, Duration::from_secs(5)).await?;
    let watcher = Client::connect(config(&["Address_Set"])?, Duration::from_secs(5)).await?;
    let set = Condition::equals("name", Value::string("veg-bench"));
    let mut latencies = Vec::with_capacity(count);
    let start = Instant::now();
    for index in 0..count {
        let address = format!("198.18.{}.{}", index / 256, index % 256);
        let change = [Operation::Mutate {
            table: "Address_Set".into(),
            conditions: vec![set.clone()],
            mutations: vec![Mutation::insert(
                "addresses",
                Value::string_set([address.as_str()]),
            )],
        }];
        let committed = Instant::now();
        writer.transact(&change).await?;
        let wanted = veg_ovsdb::Atom::string(address.as_str());
        watcher
            .wait_for(Duration::from_secs(5), |replica| {
                replica.table("Address_Set").any(|(_, row)| {
                    row.get("addresses")
                        .is_some_and(|a| a.as_set().contains(&wanted))
                })
            })
            .await?;
        latencies.push(committed.elapsed());
    }
    let total = start.elapsed();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    println!(
        "veg-ovsdb: {count} changes in {:.3} s; commit -> seen by a monitor: median {:.3} ms, p99 {:.3} ms",
        total.as_secs_f64(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3
    );
    Ok(())
}
