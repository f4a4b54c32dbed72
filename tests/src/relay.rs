//! A TCP relay for fault injection: tests point clients at the relay instead of the real
//! service, then cut it (`down`) and restore it (`up`) while the service keeps its state.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

/// How long `up()` keeps retrying to bind the relay's port.
const BIND_RETRY: Duration = Duration::from_secs(5);

/// A TCP relay on 127.0.0.1 in front of a real service (broker, S3 server, PostgreSQL), so a
/// test can make the service unreachable and bring it back without losing its state.
pub struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    target: String,
    port: u16,
    accepted: AtomicU64,
    /// The accept loop of the current "up" period; it owns the listening socket, so aborting
    /// it closes the port and `connect()` is refused.
    accept: Mutex<Option<JoinHandle<()>>>,
    /// One task per relayed connection; it owns both sockets, so aborting it closes both.
    conns: Mutex<Vec<JoinHandle<()>>>,
}

impl Inner {
    fn accept_task(&self) -> MutexGuard<'_, Option<JoinHandle<()>>> {
        self.accept.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn conn_tasks(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Relay {
    /// Listens on 127.0.0.1:`listen_port` (0 = any free port) and forwards each connection to
    /// `target` (e.g. "127.0.0.1:9092").
    pub async fn start(listen_port: u16, target: &str) -> anyhow::Result<Relay> {
        let listener = bind(listen_port).await?;
        let port = listener
            .local_addr()
            .context("relay listener address")?
            .port();
        let inner = Arc::new(Inner {
            target: target.to_owned(),
            port,
            accepted: AtomicU64::new(0),
            accept: Mutex::new(None),
            conns: Mutex::new(Vec::new()),
        });
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&inner)));
        *inner.accept_task() = Some(task);
        Ok(Relay { inner })
    }

    /// The relay's address, "127.0.0.1:PORT".
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.inner.port)
    }

    pub fn port(&self) -> u16 {
        self.inner.port
    }

    /// Makes the service unreachable: closes the listening socket (new `connect()`s are
    /// refused) and cuts every open connection at once (both sockets closed). Returns once all
    /// of that is done. Calling it while already down is harmless.
    pub async fn down(&self) {
        // Stop accepting first, so no connection task is added after the cut below.
        let accept = self.inner.accept_task().take();
        if let Some(task) = accept {
            task.abort();
            // Resolves once the task's future, and with it the listener, has been dropped.
            let _ = task.await;
        }
        let conns = std::mem::take(&mut *self.inner.conn_tasks());
        for task in &conns {
            task.abort();
        }
        for task in conns {
            let _ = task.await;
        }
    }

    /// Makes the service reachable again on the same port (retries the bind for up to ~5 s
    /// if the port is briefly busy). Calling it while already up is harmless.
    pub async fn up(&self) -> anyhow::Result<()> {
        let running = self
            .inner
            .accept_task()
            .as_ref()
            .is_some_and(|task| !task.is_finished());
        if running {
            return Ok(());
        }
        let listener = bind(self.inner.port).await?;
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&self.inner)));
        let previous = self.inner.accept_task().replace(task);
        if let Some(previous) = previous {
            previous.abort();
        }
        Ok(())
    }

    /// Down for `d`, then up.
    pub async fn outage(&self, d: Duration) -> anyhow::Result<()> {
        self.down().await;
        tokio::time::sleep(d).await;
        self.up().await
    }

    /// How many connections were accepted so far (to check clients really went through it).
    pub fn connections(&self) -> u64 {
        self.inner.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let accept = self.inner.accept_task().take();
        if let Some(task) = accept {
            task.abort();
        }
        let conns = std::mem::take(&mut *self.inner.conn_tasks());
        for task in conns {
            task.abort();
        }
    }
}

/// Binds 127.0.0.1:`port` with SO_REUSEADDR (so the port can be re-bound right after a close,
/// even with connections in TIME_WAIT), retrying for `BIND_RETRY` while the port is busy.
async fn bind(port: u16) -> anyhow::Result<TcpListener> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + BIND_RETRY;
    loop {
        match try_bind(addr) {
            Ok(listener) => return Ok(listener),
            Err(e) if Instant::now() >= deadline => {
                return Err(e).with_context(|| format!("relay could not bind {addr}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn try_bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            // Transient (e.g. too many open files): back off instead of spinning.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        inner.accepted.fetch_add(1, Ordering::Relaxed);
        let task = tokio::spawn(relay_one(client, inner.target.clone()));
        // The guard must be gone before the next `accept().await` (std guards are not Send).
        {
            let mut conns = inner.conn_tasks();
            conns.retain(|t| !t.is_finished());
            conns.push(task);
        }
    }
}

/// Forwards one client connection to `target` until either side closes; dropping the future
/// (abort) closes both sockets at once.
async fn relay_one(mut client: TcpStream, target: String) {
    // Target unreachable: dropping the client socket closes it, as the real service would.
    let Ok(mut server) = TcpStream::connect(&target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

/// A local echo server on a free port; returns its address.
async fn echo_server() -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    Ok(addr)
}

/// Sends `msg` and reads the same number of bytes back (writing and reading concurrently, so
/// large payloads cannot deadlock on full socket buffers).
async fn round_trip(stream: &mut TcpStream, msg: &[u8]) -> anyhow::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (mut r, mut w) = stream.split();
    let mut buf = vec![0u8; msg.len()];
    let (wrote, read) = tokio::time::timeout(Duration::from_secs(3), async {
        tokio::join!(w.write_all(msg), r.read_exact(&mut buf))
    })
    .await
    .context("echo through the relay timed out")?;
    wrote?;
    read?;
    Ok(buf)
}

/// Whether the peer closed (EOF) or reset the connection within 2 s.
async fn is_cut(stream: &mut TcpStream) -> bool {
    use tokio::io::AsyncReadExt as _;
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn relay_passes_bytes_both_ways() -> anyhow::Result<()> {
    let echo = echo_server().await?;
    let relay = Relay::start(0, &echo).await?;
    assert_ne!(relay.port(), 0);
    assert_eq!(relay.addr(), format!("127.0.0.1:{}", relay.port()));

    let mut a = TcpStream::connect(relay.addr()).await?;
    assert_eq!(round_trip(&mut a, b"hello").await?, b"hello");
    // Large enough to need several reads/writes in each direction.
    let big: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    assert_eq!(round_trip(&mut a, &big).await?, big);

    let mut b = TcpStream::connect(relay.addr()).await?;
    assert_eq!(round_trip(&mut b, b"second").await?, b"second");
    assert_eq!(round_trip(&mut a, b"first again").await?, b"first again");
    assert_eq!(relay.connections(), 2);
    Ok(())
}

#[tokio::test]
async fn relay_down_cuts_open_connections_and_refuses_new_ones() -> anyhow::Result<()> {
    let echo = echo_server().await?;
    let relay = Relay::start(0, &echo).await?;
    let mut a = TcpStream::connect(relay.addr()).await?;
    let mut b = TcpStream::connect(relay.addr()).await?;
    assert_eq!(round_trip(&mut a, b"ping").await?, b"ping");
    assert_eq!(round_trip(&mut b, b"ping").await?, b"ping");

    relay.down().await;
    assert!(is_cut(&mut a).await, "open connection survived down()");
    assert!(is_cut(&mut b).await, "open connection survived down()");
    assert!(
        TcpStream::connect(relay.addr()).await.is_err(),
        "connect() succeeded while the relay is down"
    );
    // A second down() is harmless.
    relay.down().await;
    assert!(TcpStream::connect(relay.addr()).await.is_err());
    assert_eq!(relay.connections(), 2);
    Ok(())
}

#[tokio::test]
async fn relay_up_serves_again_on_the_same_port() -> anyhow::Result<()> {
    let echo = echo_server().await?;
    let relay = Relay::start(0, &echo).await?;
    let port = relay.port();
    let mut a = TcpStream::connect(relay.addr()).await?;
    assert_eq!(round_trip(&mut a, b"before").await?, b"before");

    relay.down().await;
    assert!(TcpStream::connect(relay.addr()).await.is_err());
    relay.up().await?;
    // A second up() is harmless.
    relay.up().await?;
    assert_eq!(relay.port(), port);
    let mut b = TcpStream::connect(relay.addr()).await?;
    assert_eq!(round_trip(&mut b, b"after").await?, b"after");
    assert_eq!(relay.connections(), 2);

    // outage(): refused during the outage, served again after it, open connections cut.
    let addr = relay.addr();
    let (outage, refused_during) = tokio::join!(relay.outage(Duration::from_millis(500)), async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        TcpStream::connect(&addr).await.is_err()
    });
    outage?;
    assert!(refused_during, "connect() succeeded during the outage");
    assert!(is_cut(&mut b).await, "open connection survived the outage");
    let mut c = TcpStream::connect(relay.addr()).await?;
    assert_eq!(round_trip(&mut c, b"after outage").await?, b"after outage");
    assert_eq!(relay.connections(), 3);
    Ok(())
}
