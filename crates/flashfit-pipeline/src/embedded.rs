use std::sync::mpsc;
use std::thread::JoinHandle;

use rdkafka::mocking::MockCluster;

use crate::{Error, Result};

/// librdkafka's in-process Kafka-protocol broker (a real TCP listener on loopback), used by
/// `flashfit run` when no brokers are configured. It lives on its own thread because the mock
/// handle is not `Send`; dropping this stops it.
pub struct EmbeddedBroker {
    bootstrap: String,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("bootstrap", &self.bootstrap)
            .finish()
    }
}

impl EmbeddedBroker {
    /// Starts the broker and creates `topics` with `partitions` each (the mock does not
    /// implement the CreateTopics admin API).
    pub fn start(topics: &[String], partitions: i32) -> Result<Self> {
        let (ready_tx, ready_rx) = mpsc::channel::<Result<String, String>>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let mut topics = topics.to_vec();
        topics.sort();
        topics.dedup();
        let thread = std::thread::Builder::new()
            .name("embedded-broker".into())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                for t in &topics {
                    if let Err(e) = cluster.create_topic(t, partitions, 1) {
                        let _ = ready_tx.send(Err(format!("create topic {t}: {e}")));
                        return;
                    }
                }
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                let _ = stop_rx.recv();
                drop(cluster);
            })?;
        let bootstrap = ready_rx
            .recv()
            .map_err(|_| Error::Invalid("embedded broker thread died".into()))?
            .map_err(|e| Error::Invalid(format!("embedded broker: {e}")))?;
        Ok(EmbeddedBroker {
            bootstrap,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
