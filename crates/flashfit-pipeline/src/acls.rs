//! Who may read and write what on Kafka: the per-service permissions as data
//! ([`permissions`]), derived from the pipeline and the topic names so they cannot drift from
//! what the workers do, and rendered for Kafka's `kafka-acls` tool ([`kafka_acls`]) and for
//! Strimzi `KafkaUser` resources ([`strimzi_users`]). `flashfit acls` prints either.
//!
//! Principals (SASL/SCRAM user names, or the CN of an mTLS client certificate):
//! `upload-service` writes uploads and deletes; `app-gateway` writes feedback and KPI events;
//! `flashfit-serve` writes KPI events (impressions); each worker `flashfit-<stage>` reads its
//! input topics with its own consumer groups and writes its outputs, the status topic and its
//! dead-letter topic; `flashfit-operator` (replay, reprocess, dead-letter drains, `lag`) reads
//! every FlashFit topic and group and re-publishes into the input topics.

use std::collections::{BTreeMap, BTreeSet};

use flashfit_config::Config;
use flashfit_schema::{StageName, Topics};

use crate::Pipeline;

/// What a principal may do with one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Read,
    Write,
    Describe,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "Read",
            Operation::Write => "Write",
            Operation::Describe => "Describe",
        }
    }
}

/// A Kafka resource an ACL names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    Topic(String),
    Group(String),
    /// Every topic whose name starts with this.
    TopicPrefix(String),
    /// Every group whose name starts with this.
    GroupPrefix(String),
}

/// One principal's permissions: resource → operations.
pub type Grants = BTreeMap<Resource, BTreeSet<Operation>>;

/// Every principal's permissions under `config`'s topic and group names.
pub fn permissions(config: &Config, pipeline: &Pipeline) -> BTreeMap<String, Grants> {
    let topics = Topics::new(config.kafka.topic_prefix.clone());
    let mut out: BTreeMap<String, Grants> = BTreeMap::new();
    let mut grant = |who: &str, r: Resource, ops: &[Operation]| {
        out.entry(who.to_owned())
            .or_default()
            .entry(r)
            .or_default()
            .extend(ops.iter().copied());
    };
    use Operation::{Describe, Read, Write};
    let w = &[Write, Describe];
    let r = &[Read, Describe];
    grant("upload-service", Resource::Topic(topics.uploads()), w);
    grant("upload-service", Resource::Topic(topics.deletes()), w);
    grant("app-gateway", Resource::Topic(topics.feedback()), w);
    grant("app-gateway", Resource::Topic(topics.kpi()), w);
    grant("flashfit-serve", Resource::Topic(topics.kpi()), w);
    // Readers: each consumer group the system runs, and the topics it reads.
    let group_prefix = format!("{}-", config.kafka.group_prefix);
    for (group, inputs) in crate::consumer_groups(config, pipeline) {
        let worker = worker_of(&group, &group_prefix);
        let who = format!("flashfit-{}", worker.as_str());
        grant(&who, Resource::Group(group), &[Read]);
        for t in inputs {
            grant(&who, Resource::Topic(t), r);
        }
    }
    // Writers: what each worker produces.
    for stage in &pipeline.stages {
        let who = format!("flashfit-{}", stage.as_str());
        if let Some(t) = topics.output_of(*stage) {
            grant(&who, Resource::Topic(t), w);
        }
        grant(&who, Resource::Topic(topics.status()), w);
        grant(&who, Resource::Topic(topics.dlq(stage.as_str())), w);
        // An outfit split logs a `wear` feedback event (detect); any model stage may run it.
        grant(&who, Resource::Topic(topics.feedback()), w);
    }
    for sink in [StageName::Parquet, StageName::Lance, StageName::Kpi] {
        let who = format!("flashfit-{}", sink.as_str());
        grant(&who, Resource::Topic(topics.dlq(sink.as_str())), w);
    }
    let parquet = format!("flashfit-{}", StageName::Parquet.as_str());
    for t in crate::dlq_topics(&topics) {
        if StageName::ALL.iter().all(|s| t != topics.dlq(s.as_str())) {
            // The funnel sinks' own dead letters (they run in the parquet worker).
            grant(&parquet, Resource::Topic(t), w);
        }
    }
    let feedback = format!("flashfit-{}", StageName::Feedback.as_str());
    grant(&feedback, Resource::Topic(topics.kpi()), w);
    grant(
        &feedback,
        Resource::Topic(topics.dlq(StageName::Feedback.as_str())),
        w,
    );
    // Every FlashFit topic: the status topic's name without `status` (`flashfit.`).
    let all = Resource::TopicPrefix(topics.status().trim_end_matches("status").to_owned());
    grant("flashfit-operator", all, &[Read, Write, Describe]);
    grant(
        "flashfit-operator",
        Resource::GroupPrefix(config.kafka.group_prefix.clone()),
        &[Read, Describe],
    );
    out
}

/// The worker a consumer group belongs to: `<prefix>-<stage>`, the funnel sinks' groups
/// (`<prefix>-statuses`, …) to the parquet worker that runs them.
fn worker_of(group: &str, prefix: &str) -> StageName {
    group
        .strip_prefix(prefix)
        .and_then(|s| s.parse::<StageName>().ok())
        .unwrap_or(StageName::Parquet)
}

/// The permissions as `kafka-acls` commands (one per principal and resource), for a broker
/// at `$BOOTSTRAP` with the admin's client properties in `$ADMIN_CONFIG`.
pub fn kafka_acls(perms: &BTreeMap<String, Grants>) -> String {
    let mut out = String::from(
        "#!/usr/bin/env bash\n\
         # FlashFit's Kafka ACLs, rendered by `flashfit acls --format kafka-acls` (do not edit:\n\
         # re-render). Run with BOOTSTRAP=host:port and ADMIN_CONFIG=admin.properties.\n\
         set -euo pipefail\n",
    );
    for (who, grants) in perms {
        out.push_str(&format!("\n# {who}\n"));
        for (res, ops) in grants {
            let (flag, name, pattern) = match res {
                Resource::Topic(t) => ("--topic", t.as_str(), "literal"),
                Resource::Group(g) => ("--group", g.as_str(), "literal"),
                Resource::TopicPrefix(t) => ("--topic", t.as_str(), "prefixed"),
                Resource::GroupPrefix(g) => ("--group", g.as_str(), "prefixed"),
            };
            let ops: Vec<String> = ops
                .iter()
                .map(|o| format!("--operation {}", o.as_str()))
                .collect();
            out.push_str(&format!(
                "kafka-acls.sh --bootstrap-server \"$BOOTSTRAP\" --command-config \"$ADMIN_CONFIG\" \
                 --add --allow-principal User:{who} {} {flag} {name} --resource-pattern-type {pattern}\n",
                ops.join(" ")
            ));
        }
    }
    out
}

/// The permissions as Strimzi `KafkaUser` resources (SCRAM-SHA-512 credentials the User
/// Operator makes into a Secret named after the user), for the Kafka cluster `cluster`.
pub fn strimzi_users(perms: &BTreeMap<String, Grants>, cluster: &str) -> String {
    let mut out = String::from(
        "# FlashFit's Kafka users and ACLs for Strimzi's User Operator, rendered by\n\
         # `flashfit acls --format strimzi` (do not edit: re-render).\n",
    );
    for (who, grants) in perms {
        out.push_str(&format!(
            "---\napiVersion: kafka.strimzi.io/v1beta2\nkind: KafkaUser\nmetadata:\n  name: {who}\n  \
             labels:\n    strimzi.io/cluster: {cluster}\n    app.kubernetes.io/name: flashfit\n\
             spec:\n  authentication:\n    type: scram-sha-512\n  authorization:\n    type: simple\n    acls:\n"
        ));
        for (res, ops) in grants {
            let (kind, name, pattern) = match res {
                Resource::Topic(t) => ("topic", t.as_str(), "literal"),
                Resource::Group(g) => ("group", g.as_str(), "literal"),
                Resource::TopicPrefix(t) => ("topic", t.as_str(), "prefix"),
                Resource::GroupPrefix(g) => ("group", g.as_str(), "prefix"),
            };
            let ops: Vec<&str> = ops.iter().map(|o| o.as_str()).collect();
            out.push_str(&format!(
                "      - resource: {{type: {kind}, name: \"{name}\", patternType: {pattern}}}\n        \
                 operations: [{}]\n",
                ops.join(", ")
            ));
        }
    }
    out
}

/// Per-Deployment patches for a Kubernetes overlay on a SASL_SSL broker: each worker's and
/// serve's SCRAM user name, its password from the Secret Strimzi's User Operator makes for
/// its `KafkaUser` (named after the user, key `password`), and the cluster CA (Secret
/// `<cluster>-cluster-ca-cert`) mounted at `/etc/kafka-ca`.
pub fn deployment_patches(perms: &BTreeMap<String, Grants>, cluster: &str) -> String {
    let mut out = String::from(
        "# Each FlashFit Deployment's Kafka credentials, rendered by `flashfit acls --format\n\
         # k8s-patches` (do not edit: re-render).\n",
    );
    for who in perms.keys() {
        let Some(name) = who.strip_prefix("flashfit-") else {
            continue;
        };
        let deployment = if name == "serve" {
            "serve".to_owned()
        } else if StageName::ALL.iter().any(|s| s.as_str() == name) {
            format!("worker-{name}")
        } else {
            continue;
        };
        out.push_str(&format!(
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {deployment}\nspec:\n  \
             template:\n    spec:\n      containers:\n        - name: flashfit\n          env:\n            \
             - name: FLASHFIT_KAFKA__SASL_USERNAME\n              value: {who}\n            \
             - name: FLASHFIT_KAFKA__SASL_PASSWORD\n              valueFrom:\n                \
             secretKeyRef: {{name: {who}, key: password}}\n          volumeMounts:\n            \
             - {{name: kafka-ca, mountPath: /etc/kafka-ca, readOnly: true}}\n      volumes:\n        \
             - name: kafka-ca\n          secret: {{secretName: {cluster}-cluster-ca-cert, items: [{{key: ca.crt, path: ca.crt}}]}}\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_principal_gets_what_its_service_does_and_no_more() {
        let config = Config::default();
        let p = permissions(&config, &Pipeline::default_pipeline());
        let ops = |who: &str, r: Resource| {
            p.get(who)
                .and_then(|g| g.get(&r))
                .map(|o| o.iter().map(|x| x.as_str()).collect::<Vec<_>>())
                .unwrap_or_default()
        };
        let t = |n: &str| Resource::Topic(n.into());
        assert_eq!(
            ops("upload-service", t("flashfit.uploads")),
            ["Write", "Describe"]
        );
        assert!(ops("upload-service", t("flashfit.feedback")).is_empty());
        assert_eq!(ops("app-gateway", t("flashfit.kpi")), ["Write", "Describe"]);
        assert!(ops("app-gateway", t("flashfit.uploads")).is_empty());
        assert_eq!(
            ops("flashfit-quality", t("flashfit.uploads")),
            ["Read", "Describe"]
        );
        assert_eq!(
            ops(
                "flashfit-quality",
                Resource::Group("flashfit-quality".into())
            ),
            ["Read"]
        );
        assert_eq!(
            ops("flashfit-quality", t("flashfit.quality")),
            ["Write", "Describe"]
        );
        assert_eq!(
            ops("flashfit-quality", t("flashfit.dlq.quality")),
            ["Write", "Describe"]
        );
        // Nobody but the operator and quality's own readers reads the uploads topic; no
        // worker writes an input topic of the system.
        for (who, g) in &p {
            for (r, o) in g {
                if *r == t("flashfit.uploads") && o.contains(&Operation::Read) {
                    assert_eq!(who, "flashfit-quality");
                }
                if who.starts_with("flashfit-") && who != "flashfit-operator" {
                    assert!(
                        !(*r == t("flashfit.uploads") || *r == t("flashfit.deletes"))
                            || !o.contains(&Operation::Write),
                        "{who} writes {r:?}"
                    );
                }
            }
        }
        // The parquet worker reads the funnel topics with the funnel groups.
        assert_eq!(
            ops(
                "flashfit-parquet",
                Resource::Group("flashfit-statuses".into())
            ),
            ["Read"]
        );
        assert_eq!(
            ops("flashfit-parquet", t("flashfit.status")),
            ["Read", "Describe"]
        );
        let rendered = kafka_acls(&p);
        assert!(rendered.contains(
            "--allow-principal User:upload-service --operation Write --operation Describe --topic flashfit.uploads --resource-pattern-type literal"
        ), "{rendered}");
        let users = strimzi_users(&p, "flashfit");
        assert_eq!(users.matches("kind: KafkaUser").count(), p.len());
    }
}
