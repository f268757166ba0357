//! Serving HTTP/1.1 with deadlines for slow and idle clients.
//!
//! Every Warden server (the API, the front proxy, the console) serves its accepted
//! connections through [`serve_connection`], or [`serve`] for an axum router, so that
//! a client cannot hold a connection open forever by sending nothing, half a request
//! head, or nothing more after a response. The semantics are those of Go's
//! `http.Server` and nginx:
//!
//! - **header-read timeout** ([`Timeouts::header_read`], 10 s by default): the time a
//!   client has to send a complete request head, counted from accept for the first
//!   request and from the first byte of each later one on a keep-alive connection.
//! - **idle timeout** ([`Timeouts::idle`], 60 s by default): how long a keep-alive
//!   connection may wait, after a response, for the first byte of the next request.
//!
//! A connection past either deadline is closed without an answer. While a request is
//! being served (from the moment its head is read until its response body has been
//! handed over) no deadline applies: a slow handler or a long streamed response is
//! the request timeout's business, not this one's.
//!
//! **Why this is written here.** hyper's own `http1::Builder::header_read_timeout`
//! restarts its timer as soon as a connection waits for its next request, so it
//! covers idle time and head time together: on its own it would cap keep-alive idle
//! time at the header timeout, and hyper has no separate idle timeout. So the
//! deadlines are kept by [`serve_connection`] itself: the service wrapper marks when
//! a request's head has been read (the service is called) and when its response is
//! done (the response body is dropped, which hyper does once it has written it, and
//! which wakes the connection's task), and the connection's reader, which hyper
//! polls whenever it waits for a request head, fails the read with
//! [`std::io::ErrorKind::TimedOut`] once the current deadline has passed. hyper then
//! drops the connection, and the client reads end of stream.
//!
//! Only HTTP/1.1 is served (no HTTP/2 over cleartext): every client of these servers
//! speaks HTTP/1.1, and the deadlines above are defined for it.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long a client may take; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Time to send a complete request head: from accept for the first request,
    /// from its first byte for each later one.
    pub header_read: Duration,
    /// Time a keep-alive connection may wait for the next request's first byte.
    pub idle: Duration,
}

impl Timeouts {
    /// The default header-read timeout, as Go's and nginx's common settings.
    pub const DEFAULT_HEADER_READ: Duration = Duration::from_secs(10);
    /// The default idle timeout.
    pub const DEFAULT_IDLE: Duration = Duration::from_secs(60);
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            header_read: Self::DEFAULT_HEADER_READ,
            idle: Self::DEFAULT_IDLE,
        }
    }
}

/// Serves one accepted connection with `service` (HTTP/1.1, keep-alive), closing it
/// when the client is slower than `timeouts` allow. When `stopping` completes the
/// connection shuts down gracefully: the request being served finishes, and the
/// connection closes instead of waiting for another. Resolves when it is closed; an
/// error says why it ended abnormally (a client past a deadline is one: log it
/// quietly).
pub async fn serve_connection<S, B>(
    stream: TcpStream,
    service: S,
    timeouts: Timeouts,
    stopping: impl Future<Output = ()>,
) -> Result<(), hyper::Error>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let progress = Arc::new(Progress::default());
    let io = Deadlines::new(stream, Arc::clone(&progress), timeouts);
    let service = Watched {
        inner: service,
        progress,
    };
    let connection = hyper::server::conn::http1::Builder::new()
        // hyper's own header timeout is off (it has no timer): see the module docs.
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => return result,
        () = stopping => connection.as_mut().graceful_shutdown(),
    }
    connection.await
}

/// Serves `router` on `listener` with [`serve_connection`] until `shutdown`
/// completes; then stops accepting, lets every open connection finish the request it
/// is serving, and returns when all are closed. Handlers can read the client's
/// address with `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()>,
) {
    // Every connection holds a receiver: it hears the shutdown, and the sender sees
    // when all of them are gone.
    let (stopping, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(&error).await;
                    continue;
                }
            },
            () = shutdown.as_mut() => break,
        };
        let service = Routed {
            router: router.clone(),
            peer,
        };
        let mut stop_rx = stop_rx.clone();
        // Held until the connection is closed: `stopping` below is dropped as soon
        // as the shutdown is heard, while the request in flight still runs.
        let open = stop_rx.clone();
        tokio::spawn(async move {
            let _open = open;
            let stopping = async move {
                // Also when the server is gone without a shutdown.
                let _ = stop_rx.wait_for(|stop| *stop).await;
            };
            if let Err(error) = serve_connection(stream, service, timeouts, stopping).await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    drop(stop_rx);
    let _ = stopping.send(true);
    stopping.closed().await;
}

/// What to do when `accept` fails: a connection that died before it was accepted
/// is nobody's business; anything else (out of file descriptors, say) is logged and
/// waited out rather than spun on.
async fn accept_failed(error: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::warn!(%error, "accept failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// An axum router serving one connection, telling handlers the peer's address.
struct Routed {
    router: axum::Router,
    peer: SocketAddr,
}

impl hyper::service::Service<Request<Incoming>> for Routed {
    type Response = Response<axum::body::Body>;
    type Error = Infallible;
    type Future = tower::util::Oneshot<axum::Router, Request<axum::body::Body>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let mut request = request.map(axum::body::Body::new);
        request.extensions_mut().insert(ConnectInfo(self.peer));
        tower::ServiceExt::oneshot(self.router.clone(), request)
    }
}

/// Where a connection is in its request cycle: requests whose head has been read,
/// and those whose response is done. Equal counts mean no request is being served.
#[derive(Debug, Default)]
struct Progress {
    started: AtomicU64,
    done: AtomicU64,
    /// The connection's task, as its last read that had to wait while a request was
    /// being served left it. Woken when the request is done, so that the reader
    /// sees the connection go idle and sets the idle deadline: hyper does not always
    /// read again by itself then, and a read that waits for the socket alone would
    /// wait for ever on a client that sends nothing more.
    reader: Mutex<Option<Waker>>,
}

impl Progress {
    fn reader(&self) -> std::sync::MutexGuard<'_, Option<Waker>> {
        self.reader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Counts a request as done when dropped: with the response body once hyper has
/// written it, or with the response future if there is no response.
struct Served(Arc<Progress>);

impl Drop for Served {
    fn drop(&mut self) {
        self.0.done.fetch_add(1, Ordering::AcqRel);
        let reader = self.0.reader().take();
        if let Some(reader) = reader {
            reader.wake();
        }
    }
}

/// A service that tells [`Progress`] when each request starts and ends.
struct Watched<S> {
    inner: S,
    progress: Arc<Progress>,
}

type WatchedFuture<B, E> =
    Pin<Box<dyn Future<Output = Result<Response<Finished<B>>, E>> + Send + 'static>>;

impl<S, B> hyper::service::Service<Request<Incoming>> for Watched<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
    B: Body + Send + Unpin + 'static,
{
    type Response = Response<Finished<B>>;
    type Error = S::Error;
    type Future = WatchedFuture<B, S::Error>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        // hyper calls the service once it has read a request's whole head.
        self.progress.started.fetch_add(1, Ordering::AcqRel);
        let served = Served(Arc::clone(&self.progress));
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| Finished {
                body,
                _served: served,
            }))
        })
    }
}

/// A response body that marks its request done when hyper drops it.
struct Finished<B> {
    body: B,
    _served: Served,
}

impl<B: Body + Unpin> Body for Finished<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Which deadline a connection is under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for (the rest of) a request head.
    Head,
    /// A request is being served: no deadline.
    Busy,
    /// Waiting for the next request's first byte.
    Idle,
}

/// The connection as hyper reads it: fails a read once the current deadline passed.
struct Deadlines {
    stream: TcpStream,
    progress: Arc<Progress>,
    timeouts: Timeouts,
    phase: Phase,
    /// The `done` count when this last went idle.
    seen_done: u64,
    deadline: Option<Instant>,
    /// Set to `deadline` only when a read has to wait, so a read that finds data
    /// does not touch the timer.
    timer: Pin<Box<Sleep>>,
}

impl Deadlines {
    fn new(stream: TcpStream, progress: Arc<Progress>, timeouts: Timeouts) -> Self {
        let deadline = Instant::now() + timeouts.header_read;
        Self {
            stream,
            progress,
            timeouts,
            phase: Phase::Head,
            seen_done: 0,
            deadline: Some(deadline),
            timer: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }

    /// Follows the request cycle since the last read.
    fn follow(&mut self) {
        let started = self.progress.started.load(Ordering::Acquire);
        let done = self.progress.done.load(Ordering::Acquire);
        if started != done {
            self.phase = Phase::Busy;
            self.deadline = None;
        } else if done != self.seen_done {
            // A response finished since the last read: idle until the next byte.
            self.seen_done = done;
            self.phase = Phase::Idle;
            self.deadline = Some(Instant::now() + self.timeouts.idle);
        }
    }

    fn timed_out(&self) -> std::io::Error {
        let (what, after) = match self.phase {
            Phase::Idle => ("idle", self.timeouts.idle),
            _ => ("sending a request head", self.timeouts.header_read),
        };
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("the client spent more than {after:?} {what}"),
        )
    }
}

impl AsyncRead for Deadlines {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        this.follow();
        // A client that trickles a head byte by byte never makes a read wait.
        if this
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            return Poll::Ready(Err(this.timed_out()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.phase == Phase::Idle && buf.filled().len() > before {
                    this.phase = Phase::Head;
                    this.deadline = Some(Instant::now() + this.timeouts.header_read);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if this.phase == Phase::Busy {
                    let mut reader = this.progress.reader();
                    if !reader.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        *reader = Some(cx.waker().clone());
                    }
                }
                if let Some(deadline) = this.deadline {
                    if this.timer.deadline() != deadline {
                        this.timer.as_mut().reset(deadline);
                    }
                    if this.timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(this.timed_out()));
                    }
                }
                Poll::Pending
            }
            failed @ Poll::Ready(Err(_)) => failed,
        }
    }
}

impl AsyncWrite for Deadlines {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const SHORT: Timeouts = Timeouts {
        header_read: Duration::from_millis(300),
        idle: Duration::from_secs(1),
    };

    /// A bit under a deadline, for timers that fire on the millisecond.
    const EARLY: Duration = Duration::from_millis(10);

    /// `/` answers "ok", `/peer` the client's address, `/slow` "late" after 1.5 s
    /// (longer than either timeout of [`SHORT`]).
    fn app() -> axum::Router {
        use axum::routing::get;
        axum::Router::new()
            .route("/", get(|| async { "ok" }))
            .route(
                "/peer",
                get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    "late"
                }),
            )
    }

    struct Server {
        addr: SocketAddr,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<()>,
    }

    async fn start(timeouts: Timeouts) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, app(), timeouts, async move {
            let _ = stopped.await;
        }));
        Server {
            addr,
            stop: Some(stop),
            task,
        }
    }

    /// Reads until the server closes the connection (end of stream or a reset) and
    /// returns what it sent meanwhile and how long that took; fails when it is still
    /// open after `within`.
    async fn until_closed(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, Duration) {
        let started = std::time::Instant::now();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let left = within.saturating_sub(started.elapsed());
            match tokio::time::timeout(left, stream.read(&mut buf)).await {
                Err(_) => panic!(
                    "still open after {within:?}; it sent {:?}",
                    String::from_utf8_lossy(&got)
                ),
                Ok(Ok(0)) => return (got, started.elapsed()),
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionReset => {
                    return (got, started.elapsed());
                }
                Ok(Err(error)) => panic!("read failed: {error}"),
            }
        }
    }

    /// Sends `GET path` on `stream` and reads one whole response: its status line
    /// and body.
    async fn get(stream: &mut TcpStream, path: &str) -> (String, String) {
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let read = async {
            loop {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(
                    n > 0,
                    "closed mid-response: {:?}",
                    String::from_utf8_lossy(&got)
                );
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(str::to_owned)
                        })
                        .expect("a content-length")
                        .parse()
                        .unwrap();
                    if body.len() >= length {
                        let status = head.lines().next().unwrap_or_default().to_owned();
                        return (status, body.to_owned());
                    }
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("a response within 10 s")
    }

    #[tokio::test]
    async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
        let server = start(SHORT).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let (sent, after) = until_closed(&mut stream, Duration::from_secs(5)).await;
        assert!(sent.is_empty(), "{sent:?}");
        assert!(after >= SHORT.header_read - EARLY, "closed after {after:?}");
    }

    #[tokio::test]
    async fn half_a_request_head_is_closed_after_the_header_timeout() {
        let server = start(SHORT).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: test\r\nX-Half: ")
            .await
            .unwrap();
        let (sent, after) = until_closed(&mut stream, Duration::from_secs(5)).await;
        assert!(sent.is_empty(), "{:?}", String::from_utf8_lossy(&sent));
        assert!(after >= SHORT.header_read - EARLY, "closed after {after:?}");
    }

    #[tokio::test]
    async fn a_head_trickled_byte_by_byte_is_closed_at_the_header_deadline() {
        let server = start(SHORT).await;
        let stream = TcpStream::connect(server.addr).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        let trickle = tokio::spawn(async move {
            let mut next: &[u8] = b"GET / HTTP/1.1\r\nX-Slow: ";
            while write.write_all(next).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(20)).await;
                next = b"x";
            }
        });
        let started = std::time::Instant::now();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), read.read(&mut buf))
            .await
            .expect("closed within 5 s although bytes keep coming")
            .unwrap_or(0);
        assert_eq!(n, 0);
        assert!(started.elapsed() >= SHORT.header_read - EARLY);
        trickle.abort();
    }

    #[tokio::test]
    async fn a_keep_alive_connection_waits_the_idle_timeout_not_the_header_timeout() {
        let server = start(SHORT).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        assert_eq!(
            get(&mut stream, "/").await,
            ("HTTP/1.1 200 OK".into(), "ok".into())
        );
        // Idle for twice the header timeout, well within the idle one.
        tokio::time::sleep(SHORT.header_read * 2).await;
        assert_eq!(
            get(&mut stream, "/").await,
            ("HTTP/1.1 200 OK".into(), "ok".into())
        );
        let (sent, after) = until_closed(&mut stream, Duration::from_secs(5)).await;
        assert!(sent.is_empty(), "{sent:?}");
        assert!(after >= SHORT.idle - EARLY, "closed after {after:?}");
    }

    #[tokio::test]
    async fn the_next_head_has_the_header_timeout_from_its_first_byte() {
        let timeouts = Timeouts {
            header_read: Duration::from_millis(300),
            idle: Duration::from_secs(3),
        };
        let server = start(timeouts).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        assert_eq!(get(&mut stream, "/").await.0, "HTTP/1.1 200 OK");
        tokio::time::sleep(Duration::from_millis(100)).await;
        stream.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let (sent, after) = until_closed(&mut stream, Duration::from_secs(5)).await;
        assert!(sent.is_empty(), "{sent:?}");
        assert!(
            after >= timeouts.header_read - EARLY && after < Duration::from_secs(2),
            "closed after {after:?}: the idle deadline applied, not the header one"
        );
    }

    #[tokio::test]
    async fn pipelined_requests_are_all_answered_before_the_idle_deadline_runs() {
        let server = start(SHORT).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /slow HTTP/1.1\r\nHost: a\r\n\r\nGET /peer HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let (sent, after) = until_closed(&mut stream, Duration::from_secs(10)).await;
        let sent = String::from_utf8_lossy(&sent);
        assert_eq!(sent.matches("HTTP/1.1 200 OK").count(), 3, "{sent}");
        assert!(sent.contains("late"), "{sent}");
        // The slow one alone takes 1.5 s; then the connection idles for 1 s.
        assert!(
            after >= Duration::from_millis(2500) - EARLY,
            "closed after {after:?}"
        );
    }

    #[tokio::test]
    async fn a_slow_response_is_cut_by_neither_deadline() {
        let server = start(SHORT).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        assert_eq!(
            get(&mut stream, "/slow").await,
            ("HTTP/1.1 200 OK".into(), "late".into())
        );
        assert_eq!(
            get(&mut stream, "/").await.1,
            "ok",
            "and the connection lives on"
        );
    }

    #[tokio::test]
    async fn handlers_see_the_client_address() {
        let server = start(Timeouts::default()).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let me = stream.local_addr().unwrap().to_string();
        assert_eq!(get(&mut stream, "/peer").await.1, me);
    }

    #[tokio::test]
    async fn shutdown_finishes_requests_in_flight_closes_idle_connections_and_stops_accepting() {
        let mut server = start(Timeouts::default()).await;
        let mut idle = TcpStream::connect(server.addr).await.unwrap();
        assert_eq!(get(&mut idle, "/").await.1, "ok");
        let mut busy = TcpStream::connect(server.addr).await.unwrap();
        let slow = tokio::spawn(async move { (get(&mut busy, "/slow").await, busy) });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = server.stop.take().unwrap().send(());
        // The idle connection closes at once, not after the 60 s idle timeout.
        let (_, after) = until_closed(&mut idle, Duration::from_secs(1)).await;
        assert!(after < Duration::from_secs(1));
        let ((status, body), mut busy) = slow.await.unwrap();
        assert_eq!(
            (status.as_str(), body.as_str()),
            ("HTTP/1.1 200 OK", "late")
        );
        // That connection then closes too, and the server is done.
        until_closed(&mut busy, Duration::from_secs(2)).await;
        tokio::time::timeout(Duration::from_secs(2), server.task)
            .await
            .expect("the server returns once its connections are closed")
            .unwrap();
        assert!(
            TcpStream::connect(server.addr).await.is_err(),
            "still accepting"
        );
    }

    /// The proxy's way in: any hyper service over an accepted stream.
    #[tokio::test]
    async fn a_plain_hyper_service_gets_the_same_deadlines() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let service = hyper::service::service_fn(|_request| async {
                    Ok::<_, Infallible>(Response::new(axum::body::Body::from("hi")))
                });
                tokio::spawn(serve_connection(
                    stream,
                    service,
                    SHORT,
                    std::future::pending(),
                ));
            }
        });
        let mut stream = TcpStream::connect(addr).await.unwrap();
        assert_eq!(get(&mut stream, "/").await.1, "hi");
        let (_, after) = until_closed(&mut stream, Duration::from_secs(5)).await;
        assert!(after >= SHORT.idle - EARLY, "closed after {after:?}");
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let (_, after) = until_closed(&mut silent, Duration::from_secs(5)).await;
        assert!(
            after >= SHORT.header_read - EARLY && after < SHORT.idle,
            "closed after {after:?}"
        );
    }
}
