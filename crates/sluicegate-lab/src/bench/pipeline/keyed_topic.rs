//! The latency scenario's topics: one partition holding exactly the records asked for, record
//! `i` keyed `i % keys`, reused by later runs that ask for the same.

use std::time::Duration;

use anyhow::{bail, Context as _};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use sluicegate::EmbeddedBroker;

use crate::bench::wait_for_topic;
use sluicegate_cli::tool::exit::usage;
use sluicegate_cli::tool::progress::thousands;
use sluicegate_cli::tool::{payload, topic};

/// Makes sure `name` exists with one partition holding exactly `records` records, record `i`
/// keyed `i % keys`; returns the offset of record 0.
pub(super) fn prepare_keyed_topic(
    bootstrap_servers: &str,
    embedded: Option<&EmbeddedBroker>,
    name: &str,
    records: u64,
    keys: u64,
    record_bytes: usize,
) -> anyhow::Result<i64> {
    let offsets = match topic::partition_offsets(bootstrap_servers, name)? {
        Some(offsets) => offsets,
        None => {
            match embedded {
                Some(broker) => broker
                    .create_topic(name, 1)
                    .with_context(|| format!("could not create topic `{name}`"))?,
                None => topic::create(bootstrap_servers, name, 1)?,
            }
            wait_for_topic(bootstrap_servers, name)?
        }
    };
    let [partition] = offsets[..] else {
        return Err(usage(format!(
            "topic `{name}` on {bootstrap_servers} has {} partitions, not 1: pass another --topic-prefix",
            offsets.len()
        )));
    };
    match partition.records() {
        held if held == records => {
            eprintln!(
                "topic `{name}` already holds {} records: reusing it",
                thousands(held)
            );
            return Ok(partition.low);
        }
        0 => {}
        held => {
            return Err(usage(format!(
                "topic `{name}` on {bootstrap_servers} holds {} records, not {}: pass another --topic-prefix",
                thousands(held),
                thousands(records)
            )))
        }
    }
    produce_keyed(bootstrap_servers, name, records, keys, record_bytes)?;
    let offsets = wait_for_topic(bootstrap_servers, name)?;
    match offsets[..] {
        [filled] if filled.records() == records => Ok(filled.low),
        _ => bail!(
            "topic `{name}` holds {} records after filling, not {}",
            thousands(topic::total_records(&offsets)),
            thousands(records)
        ),
    }
}

/// decimal), in order (one request in flight).
fn produce_keyed(
    bootstrap_servers: &str,
    name: &str,
    records: u64,
    keys: u64,
    record_bytes: usize,
) -> anyhow::Result<()> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("max.in.flight.requests.per.connection", "1")
        .set("message.timeout.ms", "60000")
        .create()
        .context("could not create the producer")?;
    let mut value = Vec::with_capacity(record_bytes);
    for sequence in 0..records {
        payload::fill(&mut value, sequence, record_bytes);
        let key = (sequence % keys).to_string();
        let mut record = BaseRecord::<str, [u8]>::to(name)
            .partition(0)
            .key(key.as_str())
            .payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    producer.poll(Duration::from_millis(10));
                }
                Err((error, _)) => {
                    return Err(error).with_context(|| format!("could not produce to {name}/0"))
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .with_context(|| format!("could not flush the records of `{name}`"))?;
    Ok(())
}
