//! The HTTP/1 listener: connections a client cannot hold or exhaust. At most
//! `[http] max_connections` open (more are closed on accept), a request's headers due within
//! `header_read_timeout_ms` of the connection opening or the previous response (slowloris;
//! idle keep-alive connections), and a connection with no byte either way for
//! `idle_timeout_ms` closed (a client that stops reading). Each request carries its peer's
//! address ([`axum::extract::ConnectInfo`]) for the per-client rate limit. On shutdown the
//! listener stops accepting and every connection finishes its request in flight, then closes.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// The listener's limits (from `[http]`).
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

impl ConnLimits {
    pub fn of(http: &flashfit_config::HttpConfig) -> Self {
        ConnLimits {
            max_connections: http.max_connections.max(1),
            header_read_timeout: Duration::from_millis(http.header_read_timeout_ms.max(1)),
            idle_timeout: Duration::from_millis(http.idle_timeout_ms.max(1)),
        }
    }
}

/// The listener's metrics.
#[derive(Clone)]
pub struct ConnMetrics {
    pub open: prometheus::IntGauge,
    pub refused: prometheus::IntCounter,
    pub closed: prometheus::IntCounterVec,
}

impl ConnMetrics {
    pub fn register(registry: &prometheus::Registry) -> Self {
        let open = prometheus::IntGauge::new(
            "flashfit_http_connections_open",
            "HTTP connections open now.",
        )
        .expect("valid metric definition");
        let refused = prometheus::IntCounter::new(
            "flashfit_http_connections_refused_total",
            "Connections closed on accept: max_connections were open.",
        )
        .expect("valid metric definition");
        let closed = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "flashfit_http_connections_closed_total",
                "Connections closed by the server for a limit: header_timeout (headers not in \
                 within header_read_timeout_ms), idle (no byte for idle_timeout_ms).",
            ),
            &["reason"],
        )
        .expect("valid metric definition");
        for m in [
            Box::new(open.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(refused.clone()),
            Box::new(closed.clone()),
        ] {
            registry.register(m).expect("metric registered once");
        }
        for reason in ["header_timeout", "idle"] {
            closed.with_label_values(&[reason]);
        }
        ConnMetrics {
            open,
            refused,
            closed,
        }
    }
}

/// Accepts connections on `listener` and serves `app` on each until `shutdown`, then waits
/// (at most `drain`) for the requests in flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    metrics: ConnMetrics,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        let (app, m, stop) = (app.clone(), metrics.clone(), shutdown.clone());
                        conns.spawn(async move {
                            m.open.inc();
                            connection(stream, peer, app, limits, &m, stop).await;
                            m.open.dec();
                            drop(slot);
                        });
                    }
                    Err(_) => {
                        metrics.refused.inc();
                        tracing::warn!(%peer, max = limits.max_connections, "connection refused: too many open");
                        drop(stream);
                    }
                },
                // Out of file descriptors and the like: wait rather than spin.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    let drained =
        tokio::time::timeout(drain, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            open = conns.len(),
            "connections still open after the drain time; closing them"
        );
        conns.abort_all();
    }
}

/// One connection: HTTP/1 with the header timeout, closed when idle, drained on shutdown.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: ConnLimits,
    metrics: &ConnMetrics,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(req.map(axum::body::Body::new))
        });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    if e.is_timeout() {
                        metrics.closed.with_label_values(&["header_timeout"]).inc();
                        tracing::debug!(%peer, "connection closed: headers not received in time");
                    } else {
                        tracing::debug!(%peer, error = %e, "connection ended");
                    }
                }
                return;
            }
            _ = shutdown.cancelled(), if !draining => {
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
            _ = activity.idle_for(limits.idle_timeout) => {
                metrics.closed.with_label_values(&["idle"]).inc();
                tracing::debug!(%peer, "connection closed: idle");
                return;
            }
        }
    }
}

/// When a connection last moved a byte.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let idle = last.elapsed();
            if idle >= limit {
                return;
            }
            tokio::time::sleep(limit - idle).await;
        }
    }
}

/// A stream that records when it last read or wrote.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
