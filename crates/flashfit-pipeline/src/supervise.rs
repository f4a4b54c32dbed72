use std::sync::Arc;
use std::time::Duration;

use flashfit_config::Config;
use flashfit_runtime::{Health, Metrics, Stage, admin, worker};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{Result, Worker};

/// Cancels `token` on SIGTERM or SIGINT.
pub fn shutdown_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot install SIGTERM handler");
                        let _ = ctrl_c.await;
                        token.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => tracing::info!("SIGINT received; draining"),
                _ = term.recv() => tracing::info!("SIGTERM received; draining"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        token.cancel();
    });
}

/// Runs stages in one process under one cancellation tree, with the admin server. Returns when
/// `shutdown` fires and every stage has drained and committed (`Ok`), or when any stage fails
/// (the others are cancelled and drained; the first error is returned). Draining is bounded by
/// `runtime.shutdown_timeout_ms`.
pub async fn run_stages(
    config: &Config,
    stages: Vec<Arc<dyn Stage>>,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Result<()> {
    let workers = stages
        .into_iter()
        .map(|stage| Worker {
            config: config.clone(),
            stage,
        })
        .collect();
    run_workers(config, workers, metrics, shutdown).await
}

/// [`run_stages`] for workers that each carry their own configuration (a sink's batch is its
/// file roll, see [`crate::worker_config`]); `config` gives the admin address and the
/// shutdown deadline.
pub async fn run_workers(
    config: &Config,
    workers: Vec<Worker>,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Result<()> {
    let admin_token = CancellationToken::new();
    let (_addr, admin_task) =
        admin::serve(config.admin_addr, metrics.clone(), admin_token.clone()).await?;
    let mut set = JoinSet::new();
    for Worker { config, stage } in workers {
        let metrics = metrics.clone();
        let token = shutdown.clone();
        set.spawn(async move { worker::run_worker(&config, stage, &metrics, token).await });
    }
    let mut first_err = None;
    let deadline = Duration::from_millis(config.runtime.shutdown_timeout_ms);
    // One deadline for the whole process, from the moment shutdown is seen (each worker
    // bounds its own drain by the same budget, so this only fires on a bug).
    let mut drain_until: Option<tokio::time::Instant> = None;
    loop {
        let next = if shutdown.is_cancelled() {
            let until = *drain_until.get_or_insert_with(|| tokio::time::Instant::now() + deadline);
            match tokio::time::timeout_at(until, set.join_next()).await {
                Ok(n) => n,
                Err(_) => {
                    set.abort_all();
                    first_err.get_or_insert(flashfit_runtime::Error::ShutdownTimeout(deadline));
                    break;
                }
            }
        } else {
            tokio::select! {
                n = set.join_next() => n,
                _ = shutdown.cancelled() => {
                    metrics.health().set(Health::STOPPING);
                    continue;
                }
            }
        };
        let Some(joined) = next else { break };
        let res = joined.unwrap_or_else(|e| {
            Err(flashfit_runtime::Error::Config(format!(
                "stage task panicked: {e}"
            )))
        });
        if let Err(e) = res {
            first_err.get_or_insert(e);
            shutdown.cancel();
        }
    }
    admin_token.cancel();
    let _ = admin_task.await;
    match first_err {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
