//! The front proxy: where users reach the API.
//!
//! It forwards each request to an instance of the active release (round robin over
//! the instances that are ready), or, during a canary, a configured share of them to
//! the new release. The routing table is one atomically swapped value: a deploy or a
//! rollback replaces it in one store, and every request after that goes to the new
//! upstream. Nothing here touches the control plane's store, so the proxy keeps
//! serving when the store, the scraper or the notifiers fail.
//!
//! A request whose instance cannot be connected to is sent once more to another
//! instance (it never reached the first one); an idempotent request (GET, HEAD,
//! OPTIONS, PUT, DELETE) is also retried once when its instance died mid-request.
//! Request bodies are read whole first (up to [`MAX_BODY`]) so a retry can resend
//! them; responses stream through. Each instance counts its in-flight requests so a
//! drain knows when it can stop an instance without cutting a response. Every
//! response from an instance carries the name of its release in
//! [`RELEASE_HEADER`] (`x-warden-release`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::Notify;

/// The largest request body the proxy accepts (the API's own limit is lower).
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// Response bodies of known length up to this size are read whole before answering.
const BUFFERED_BODY: u64 = 64 * 1024;

/// The response header naming the release whose instance answered a proxied request.
pub const RELEASE_HEADER: HeaderName = HeaderName::from_static("x-warden-release");

/// One API instance as the proxy sees it.
#[derive(Debug)]
pub struct Backend {
    /// Its release.
    pub release: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// `addr` as a URI authority, made once.
    authority: hyper::http::uri::Authority,
    ready: AtomicBool,
    draining: AtomicBool,
    inflight: AtomicUsize,
}

impl Backend {
    /// A backend that is not ready yet.
    #[must_use]
    pub fn new(release: &str, addr: SocketAddr) -> Arc<Self> {
        Arc::new(Self {
            release: release.to_owned(),
            addr,
            // A formatted socket address is always a valid authority.
            authority: hyper::http::uri::Authority::try_from(addr.to_string().as_str())
                .unwrap_or_else(|_| hyper::http::uri::Authority::from_static("127.0.0.1")),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            inflight: AtomicUsize::new(0),
        })
    }

    /// Whether it takes requests.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && !self.draining.load(Ordering::SeqCst)
    }

    /// Set by the supervisor: ready after `/readyz` answered, not ready once it exited.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Requests being served now.
    #[must_use]
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::SeqCst)
    }

    /// Stops new requests from reaching it; in-flight ones carry on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Counts a request in, unless the backend started draining meanwhile. The
    /// counter goes up before the flag is checked, so a drain that saw zero
    /// in-flight requests after setting the flag cannot miss this one.
    fn enter(self: &Arc<Self>) -> Option<InflightGuard> {
        self.inflight.fetch_add(1, Ordering::SeqCst);
        let guard = InflightGuard(Arc::clone(self));
        self.is_ready().then_some(guard)
    }
}

/// Holds one in-flight request on a backend until dropped (after the response body).
struct InflightGuard(Arc<Backend>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The instances of one release.
#[derive(Debug)]
pub struct Upstream {
    /// The release.
    pub release: String,
    /// Its instances.
    pub backends: Vec<Arc<Backend>>,
    next: AtomicUsize,
    /// The release's latency histogram and 200 counter, looked up once.
    hot_metrics: std::sync::OnceLock<(prometheus::Histogram, prometheus::IntCounter)>,
}

impl Upstream {
    #[must_use]
    pub fn new(release: &str, backends: Vec<Arc<Backend>>) -> Arc<Self> {
        Arc::new(Self {
            release: release.to_owned(),
            backends,
            next: AtomicUsize::new(0),
            hot_metrics: std::sync::OnceLock::new(),
        })
    }

    /// The next ready backend in round-robin order, other than `avoid`.
    fn pick(&self, avoid: Option<SocketAddr>) -> Option<InflightGuard> {
        let n = self.backends.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &self.backends[(start + i) % n])
            .filter(|b| Some(b.addr) != avoid && b.is_ready())
            .find_map(Backend::enter)
    }

    /// Whether any instance is ready.
    #[must_use]
    pub fn any_ready(&self) -> bool {
        self.backends.iter().any(|b| b.is_ready())
    }
}

/// Where requests go: the active release, and during a canary a share to another.
#[derive(Debug, Clone)]
pub struct Routes {
    pub primary: Arc<Upstream>,
    /// The canary release and the share of requests it gets (0..=1).
    pub canary: Option<(Arc<Upstream>, f64)>,
}

impl Routes {
    /// All traffic to `upstream`.
    #[must_use]
    pub fn to(upstream: Arc<Upstream>) -> Self {
        Self {
            primary: upstream,
            canary: None,
        }
    }
}

/// The proxy's metrics, registered in the console's registry.
#[derive(Clone)]
struct Metrics {
    requests: prometheus::IntCounterVec,
    duration: prometheus::HistogramVec,
    retries: prometheus::IntCounterVec,
    failures: prometheus::IntCounterVec,
}

impl Metrics {
    fn new(registry: &prometheus::Registry) -> prometheus::Result<Self> {
        let requests = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "warden_proxy_requests_total",
                "Requests through the front proxy, by release and status code.",
            ),
            &["release", "code"],
        )?;
        let duration = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new(
                "warden_proxy_request_duration_seconds",
                "Time from a request's arrival until its response is ready to send (the head, or the whole body when it is small), by release.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["release"],
        )?;
        let retries = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "warden_proxy_retries_total",
                "Requests sent again to another instance after theirs failed.",
            ),
            &["release"],
        )?;
        let failures = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "warden_proxy_upstream_failures_total",
                "Requests the proxy answered itself with 502 or 503, by release and reason.",
            ),
            &["release", "reason"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(retries.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        Ok(Self {
            requests,
            duration,
            retries,
            failures,
        })
    }
}

/// The front proxy.
pub struct Proxy {
    routes: ArcSwap<Routes>,
    metrics: Metrics,
    /// Woken whenever an instance becomes ready, for requests waiting for one.
    readiness: Notify,
    /// How long a request waits for a ready instance before a 503.
    wait_for_instance: Duration,
    /// How long an instance gets to answer before a 504 (the API's own request
    /// timeout is shorter: this catches a hung or stopped instance).
    upstream_timeout: Duration,
    canary_draw: AtomicU64,
}

type ProxyBody = Either<Tracked, Full<Bytes>>;

impl Proxy {
    /// A proxy routing to `routes`, its metrics registered in `registry`, giving an
    /// instance `upstream_timeout` to answer.
    pub fn new(
        routes: Routes,
        registry: &prometheus::Registry,
        upstream_timeout: Duration,
    ) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            routes: ArcSwap::from_pointee(routes),
            metrics: Metrics::new(registry)?,
            readiness: Notify::new(),
            wait_for_instance: Duration::from_secs(10),
            upstream_timeout,
            canary_draw: AtomicU64::new(0),
        }))
    }

    /// Replaces the routing table; every request from now on follows the new one.
    pub fn switch(&self, routes: Routes) {
        self.routes.store(Arc::new(routes));
        self.readiness.notify_waiters();
    }

    /// The current routing table.
    #[must_use]
    pub fn routes(&self) -> Arc<Routes> {
        self.routes.load_full()
    }

    /// Tells waiting requests that an instance may have become ready.
    pub fn instance_ready(&self) {
        self.readiness.notify_waiters();
    }

    /// Serves HTTP/1.1 on `listener` with `threads` event loops, like nginx's
    /// workers: each is a single-threaded runtime on its own OS thread with its own
    /// upstream connection pool, so a request and its upstream call never hop between
    /// threads, and the proxy does not share threads with the control plane.
    pub fn spawn(
        self: &Arc<Self>,
        listener: std::net::TcpListener,
        threads: usize,
    ) -> anyhow::Result<ProxyThreads> {
        listener.set_nonblocking(true)?;
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let (exited, exits) = tokio::sync::mpsc::unbounded_channel();
        let mut handles = Vec::new();
        for n in 0..threads.max(1) {
            let listener = listener.try_clone()?;
            let (proxy, mut stop_rx, exited) = (Arc::clone(self), stop_rx.clone(), exited.clone());
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(
                std::thread::Builder::new()
                    .name(format!("proxy-{n}"))
                    .spawn(move || {
                        let result = runtime.block_on(async move {
                            let listener = tokio::net::TcpListener::from_std(listener)?;
                            tokio::select! {
                                () = proxy.accept_loop(listener) => {}
                                _ = stop_rx.wait_for(|stop| *stop) => {}
                            }
                            anyhow::Ok(())
                        });
                        let _ = exited.send(result);
                    })?,
            );
        }
        Ok(ProxyThreads {
            stop,
            exits,
            handles,
        })
    }

    /// Accepts connections on this thread's runtime until the task is dropped.
    async fn accept_loop(self: Arc<Self>, listener: tokio::net::TcpListener) {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(error) => {
                    // Out of file descriptors, say: back off rather than spin.
                    tracing::warn!(%error, "proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let (proxy, client) = (Arc::clone(&self), client.clone());
            // Computed once per connection, not per request.
            let forwarded_for = HeaderValue::from_str(&peer.ip().to_string()).ok();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let (proxy, client, forwarded_for) =
                        (Arc::clone(&proxy), client.clone(), forwarded_for.clone());
                    async move {
                        Ok::<_, Infallible>(
                            proxy.handle(&client, request, forwarded_for.as_ref()).await,
                        )
                    }
                });
                if let Err(error) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(%error, %peer, "proxy connection ended with an error");
                }
            });
        }
    }

    async fn handle(
        &self,
        client: &Client<HttpConnector, Full<Bytes>>,
        request: Request<Incoming>,
        forwarded_for: Option<&HeaderValue>,
    ) -> Response<ProxyBody> {
        let started = Instant::now();
        let (mut parts, body) = request.into_parts();
        let body = if body.is_end_stream() {
            Bytes::new()
        } else {
            match Limited::new(body, MAX_BODY).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(error) => {
                    let too_big = error.is::<http_body_util::LengthLimitError>();
                    return problem(
                        if too_big {
                            StatusCode::PAYLOAD_TOO_LARGE
                        } else {
                            StatusCode::BAD_REQUEST
                        },
                        if too_big {
                            "the request body is larger than the proxy accepts (4 MiB)"
                        } else {
                            "the request body could not be read"
                        },
                    );
                }
            }
        };
        strip_hop_by_hop(&mut parts.headers);
        if let Some(value) = forwarded_for {
            parts
                .headers
                .append(HeaderName::from_static("x-forwarded-for"), value.clone());
        }
        let upstream = self.choose();
        let path = parts.uri.path_and_query().cloned();
        let idempotent = matches!(
            parts.method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
        );
        let mut avoid = None;
        let mut tried = false;
        let mut timed_out = false;
        for attempt in 0..2 {
            let Some(guard) = self.pick(&upstream, avoid).await else {
                break;
            };
            tried = true;
            let addr = guard.0.addr;
            let mut uri = hyper::http::uri::Parts::default();
            uri.scheme = Some(hyper::http::uri::Scheme::HTTP);
            uri.authority = Some(guard.0.authority.clone());
            uri.path_and_query = path.clone();
            let mut builder = Request::builder()
                .method(parts.method.clone())
                .uri(uri)
                .version(hyper::Version::HTTP_11);
            if let Some(headers) = builder.headers_mut() {
                headers.clone_from(&parts.headers);
            }
            let Ok(forward) = builder.body(Full::new(body.clone())) else {
                return problem(StatusCode::BAD_REQUEST, "the request URI is not valid");
            };
            let Ok(sent) =
                tokio::time::timeout(self.upstream_timeout, client.request(forward)).await
            else {
                // The request may have been applied: never retried.
                tracing::warn!(instance = %addr, "upstream did not answer in {:?}", self.upstream_timeout);
                timed_out = true;
                break;
            };
            match sent {
                Ok(response) => {
                    let (mut head, incoming) = response.into_parts();
                    // A small body of known length is read whole before answering,
                    // as nginx buffers: the client gets head and body in one write
                    // (not the head first and the body after another hop between
                    // tasks), and an instance that dies mid-body is retried like one
                    // that died before answering, since nothing was sent yet.
                    let buffered = incoming
                        .size_hint()
                        .exact()
                        .is_some_and(|n| n <= BUFFERED_BODY);
                    let body = if buffered {
                        match incoming.collect().await {
                            Ok(collected) => Either::Right(Full::new(collected.to_bytes())),
                            Err(error) => {
                                tracing::warn!(%error, instance = %addr, attempt, "upstream response failed");
                                if attempt == 0 && idempotent {
                                    self.metrics
                                        .retries
                                        .with_label_values(&[&upstream.release])
                                        .inc();
                                    avoid = Some(addr);
                                    continue;
                                }
                                break;
                            }
                        }
                    } else {
                        Either::Left(incoming)
                    };
                    let release = &guard.0.release;
                    let (duration, ok) = if *release == upstream.release {
                        upstream
                            .hot_metrics
                            .get_or_init(|| {
                                (
                                    self.metrics.duration.with_label_values(&[release]),
                                    self.metrics
                                        .requests
                                        .with_label_values(&[release.as_str(), "200"]),
                                )
                            })
                            .clone()
                    } else {
                        // Followed a switch made while waiting for an instance.
                        (
                            self.metrics.duration.with_label_values(&[release]),
                            self.metrics
                                .requests
                                .with_label_values(&[release.as_str(), "200"]),
                        )
                    };
                    duration.observe(started.elapsed().as_secs_f64());
                    if head.status == StatusCode::OK {
                        ok.inc();
                    } else {
                        self.metrics
                            .requests
                            .with_label_values(&[release.as_str(), head.status.as_str()])
                            .inc();
                    }
                    strip_hop_by_hop(&mut head.headers);
                    // Which release answered: for the rollback benchmark and for
                    // anyone checking a deploy from outside.
                    if let Ok(value) = HeaderValue::from_str(release) {
                        head.headers.insert(RELEASE_HEADER, value);
                    }
                    let body = match body {
                        // The instance still sends: it stays counted in flight.
                        Either::Left(inner) => Either::Left(Tracked {
                            inner,
                            _guard: guard,
                        }),
                        Either::Right(whole) => Either::Right(whole),
                    };
                    return Response::from_parts(head, body);
                }
                Err(error) => {
                    let never_sent = error.is_connect();
                    if never_sent {
                        // It is not listening: it died or is restarting.
                        guard.0.set_ready(false);
                    }
                    tracing::warn!(%error, instance = %addr, attempt, "upstream request failed");
                    if attempt == 0 && (never_sent || idempotent) {
                        self.metrics
                            .retries
                            .with_label_values(&[&upstream.release])
                            .inc();
                        avoid = Some(addr);
                        continue;
                    }
                    break;
                }
            }
        }
        let (status, reason, detail) = if timed_out {
            (
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                "the API instance did not answer in time",
            )
        } else if tried {
            (
                StatusCode::BAD_GATEWAY,
                "upstream",
                "the API instance failed before answering",
            )
        } else {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "no_instance",
                "no API instance is ready; the supervisor is starting one",
            )
        };
        self.metrics
            .failures
            .with_label_values(&[upstream.release.as_str(), reason])
            .inc();
        self.metrics
            .requests
            .with_label_values(&[upstream.release.as_str(), status.as_str()])
            .inc();
        problem(status, detail)
    }

    /// The upstream for the next request: the primary, or the canary for its share.
    fn choose(&self) -> Arc<Upstream> {
        let routes = self.routes.load();
        if let Some((canary, share)) = &routes.canary {
            // Evenly spread, not random: the n-th request goes to the canary when
            // floor(n·share) moves, so 10% is exactly every tenth request.
            let n = self.canary_draw.fetch_add(1, Ordering::Relaxed) as f64;
            if ((n + 1.0) * share).floor() > (n * share).floor() {
                return Arc::clone(canary);
            }
        }
        Arc::clone(&routes.primary)
    }

    /// A ready backend of `upstream` (or of the upstream that replaced it while
    /// waiting), waiting up to `wait_for_instance` for one to become ready.
    async fn pick(
        &self,
        upstream: &Arc<Upstream>,
        avoid: Option<SocketAddr>,
    ) -> Option<InflightGuard> {
        let deadline = tokio::time::Instant::now() + self.wait_for_instance;
        loop {
            let notified = self.readiness.notified();
            if let Some(guard) = upstream.pick(avoid) {
                return Some(guard);
            }
            // The routes may have been switched since this request chose its
            // upstream (a rollback away from a dead release): follow them.
            let current = self.routes.load();
            if !Arc::ptr_eq(&current.primary, upstream)
                && let Some(guard) = current.primary.pick(avoid)
            {
                return Some(guard);
            }
            if avoid.is_some() && upstream.backends.len() == 1 {
                // Retrying on "another" instance of a single-instance release means
                // waiting for it to come back.
                if let Some(guard) = upstream.pick(None) {
                    return Some(guard);
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }
}

/// The proxy's event-loop threads.
pub struct ProxyThreads {
    stop: tokio::sync::watch::Sender<bool>,
    exits: tokio::sync::mpsc::UnboundedReceiver<anyhow::Result<()>>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl ProxyThreads {
    /// Completes when an event loop stops by itself, with why.
    pub async fn exited(&mut self) -> anyhow::Result<()> {
        match self.exits.recv().await {
            Some(Err(error)) => Err(error.context("the front proxy stopped")),
            _ => anyhow::bail!("the front proxy stopped"),
        }
    }

    /// Stops accepting and waits for the threads (open connections are dropped).
    pub fn stop(self) {
        let _ = self.stop.send(true);
        for handle in self.handles {
            let _ = handle.join();
        }
    }
}

/// Removes the headers that belong to one connection, not to the message.
fn strip_hop_by_hop(headers: &mut hyper::HeaderMap) {
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
}

/// An RFC 9457 problem answered by the proxy itself.
fn problem(status: StatusCode, detail: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(body.to_string()))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// A response body that keeps its request counted in flight until it is done.
struct Tracked {
    inner: Incoming,
    _guard: InflightGuard,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn backends(release: &str, n: u16) -> Vec<Arc<Backend>> {
        (0..n)
            .map(|i| {
                let b = Backend::new(release, SocketAddr::from(([127, 0, 0, 1], 1000 + i)));
                b.set_ready(true);
                b
            })
            .collect()
    }

    #[test]
    fn round_robin_skips_instances_that_are_not_ready_or_draining() {
        let list = backends("v1", 3);
        list[1].set_ready(false);
        let upstream = Upstream::new("v1", list.clone());
        let picked: Vec<u16> = (0..4)
            .map(|_| upstream.pick(None).unwrap().0.addr.port())
            .collect();
        assert!(!picked.contains(&1001), "{picked:?}");
        list[0].start_draining();
        assert_eq!(upstream.pick(None).unwrap().0.addr.port(), 1002);
        assert_eq!(upstream.pick(Some(list[2].addr)).map(|g| g.0.addr), None);
    }

    #[test]
    fn in_flight_requests_are_counted_until_their_guard_drops() {
        let list = backends("v1", 1);
        let upstream = Upstream::new("v1", list.clone());
        let a = upstream.pick(None).unwrap();
        let b = upstream.pick(None).unwrap();
        assert_eq!(list[0].inflight(), 2);
        drop(a);
        drop(b);
        assert_eq!(list[0].inflight(), 0);
        list[0].start_draining();
        assert!(upstream.pick(None).is_none());
        assert_eq!(list[0].inflight(), 0, "a refused entry is not counted");
    }

    #[tokio::test]
    async fn a_canary_gets_exactly_its_share() {
        let registry = prometheus::Registry::new();
        let primary = Upstream::new("v1", backends("v1", 1));
        let canary = Upstream::new("v2", backends("v2", 1));
        let proxy = Proxy::new(
            Routes {
                primary,
                canary: Some((canary, 0.1)),
            },
            &registry,
            Duration::from_secs(60),
        )
        .unwrap();
        let mut to_canary = 0;
        for _ in 0..1000 {
            if proxy.choose().release == "v2" {
                to_canary += 1;
            }
        }
        assert_eq!(to_canary, 100);
    }

    #[tokio::test]
    async fn an_instance_that_never_answers_gets_a_504_in_time() {
        // Accepts connections and never answers, like a stopped process.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let backend = Backend::new("v1", silent.local_addr().unwrap());
        backend.set_ready(true);
        let proxy = Proxy::new(
            Routes::to(Upstream::new("v1", vec![Arc::clone(&backend)])),
            &prometheus::Registry::new(),
            Duration::from_millis(300),
        )
        .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let threads = proxy.spawn(listener, 1).unwrap();
        let started = std::time::Instant::now();
        let response = reqwest::get(format!("http://{addr}/v1/items"))
            .await
            .unwrap();
        assert_eq!(response.status(), 504);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(backend.inflight(), 0, "the request is no longer counted");
        threads.stop();
        drop(silent);
    }
}
