//! Kafka client construction and topic administration. The only module (with `worker`) that
//! touches rdkafka.

use std::time::Duration;

use flashfit_config::KafkaConfig;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;

use crate::{Error, Result};

/// Base client config: bootstrap servers plus every pass-through librdkafka property.
pub fn client_config(k: &KafkaConfig) -> Result<ClientConfig> {
    let brokers = k.brokers.as_deref().ok_or_else(|| {
        Error::Config("no Kafka brokers configured: set FLASHFIT_KAFKA_BROKERS".into())
    })?;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for (key, value) in &k.properties {
        c.set(key, value.expose());
    }
    Ok(c)
}

/// The producer every stage uses: idempotent, acks from all in-sync replicas, large enough for
/// a dead-lettered message of a few megabytes. User properties override these defaults.
pub fn producer(k: &KafkaConfig) -> Result<FutureProducer> {
    let mut c = ClientConfig::new();
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.max.bytes", "16777216");
    merge(&mut c, client_config(k)?);
    Ok(c.create()?)
}

/// Consumer settings owned by the runtime: manual commits only, offsets never auto-stored.
pub fn consumer_config(
    k: &KafkaConfig,
    group: &str,
    stats_interval_ms: u64,
) -> Result<ClientConfig> {
    let mut c = ClientConfig::new();
    // A fetch waits at most 100 ms for data (librdkafka: 500): brokers that do not answer a
    // long poll early when data arrives (Tansu) would otherwise add up to 500 ms per stage.
    // A member that died (kill -9, a lost node) holds its partitions until its session
    // expires: 6 s (librdkafka: 45 s; Kafka's smallest allowed by default) bounds how long a
    // crash stalls its partitions, with a heartbeat every 1 s so survivors hear of a
    // rebalance sooner (measured on Tansu: partitions moving again 9-15 s after a SIGKILL,
    // rebalance and first commit included). Static membership
    // (`FLASHFIT_KAFKA__GROUP_INSTANCE_ID`, e.g. the pod name) avoids the rebalance for a
    // restart under the same name where the broker supports it (on Tansu it made no
    // measurable difference: 7.4 s in one run).
    c.set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .set("statistics.interval.ms", stats_interval_ms.to_string());
    merge(&mut c, client_config(k)?);
    // Not overridable: at-least-once depends on them.
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    Ok(c)
}

fn merge(into: &mut ClientConfig, from: ClientConfig) {
    for (k, v) in from.config_map() {
        into.set(k, v);
    }
}

/// Creates the topics that do not exist yet, with the configured partitions and replication.
pub async fn ensure_topics(k: &KafkaConfig, topics: &[String]) -> Result<()> {
    if !k.create_topics || topics.is_empty() {
        return Ok(());
    }
    // A topic named twice in one request is rejected by some brokers.
    let mut unique: Vec<&String> = topics.iter().collect();
    unique.sort();
    unique.dedup();
    let admin: AdminClient<DefaultClientContext> = client_config(k)?.create()?;
    let new: Vec<NewTopic<'_>> = unique
        .into_iter()
        .map(|t| {
            NewTopic::new(
                t,
                k.partitions,
                TopicReplication::Fixed(k.replication_factor),
            )
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(15)));
    for result in admin.create_topics(&new, &opts).await? {
        match result {
            Ok(topic) => tracing::info!(topic, partitions = k.partitions, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(Error::Config(format!(
                    "cannot create topic {topic}: {code}"
                )));
            }
        }
    }
    Ok(())
}
