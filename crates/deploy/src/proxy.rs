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
//!
//! **Slow and idle clients.** A client connection that takes longer than the
//! header-read timeout to send a request head, or waits longer than the idle
//! timeout for its next request, is closed ([`warden_telemetry::serve`]). Unused
//! connections to instances are dropped well before the instances' own idle timeout
//! ([`upstream_idle`]), so the proxy never sends a request on one an instance is
//! closing.
//!
//! **Who the client is.** An instance sees every connection come from the proxy, so
//! the proxy tells it the client: it replaces any `X-Forwarded-For` a client sent
//! (it cannot vouch for it; it is the edge, and the API reads the last entry) with
//! the address that connected, and adds [`SECRET_HEADER`] with a random secret made
//! at start ([`Proxy::forwarding_secret`]), which the supervisor gives the instances
//! it starts in their environment ([`SECRET_ENV`]). An instance believes
//! `X-Forwarded-For` only from a request with that secret, so its login throttle
//! counts each user under their own address and a client that connects to an
//! instance directly cannot pick one. Any copy of the header a client sends is
//! removed, and the header is never sent back in a response or logged.
//!
//! **Users affected.** The proxy also counts the distinct clients it answers per
//! time window (a minute by default, aligned to the clock), and those of them that
//! got a failed response (a 5xx from the instance, the proxy's own 502/503/504, an
//! instance that reset a streamed response) or a slow one (over the latency
//! objective, 500 ms by default as the `LatencyHigh` alert). A client is an HMAC of
//! its bearer token, else of its address, under a key kept in the data dir
//! ([`client_key`]), so the same user is the same client across windows and
//! restarts and no token is kept. Each event loop counts in a
//! [`ClientSketch`](warden_store::ClientSketch) of its own (an uncontended lock);
//! a keep-alive connection remembers its last token's key and its last count, so
//! its user's next requests in the same window cost a comparison, not an HMAC and
//! a sketch update. When a window ends the loops' sketches are merged, the gauges
//! `warden_proxy_clients` and `warden_proxy_clients_affected` show it, and it waits
//! in memory for the control plane to take it ([`Proxy::take_closed_windows`]) and
//! store it. The proxy itself never touches the store.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::Sha256;
use tokio::sync::Notify;
use warden_store::ClientWindow;
use warden_telemetry::serve::{Timeouts, serve_connection};

/// The largest request body the proxy accepts (the API's own limit is lower).
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// Response bodies of known length up to this size are read whole before answering.
const BUFFERED_BODY: u64 = 64 * 1024;

/// The response header naming the release whose instance answered a proxied request.
pub const RELEASE_HEADER: HeaderName = HeaderName::from_static("x-warden-release");

/// The request header that proves to an instance that a request came through this
/// proxy. The API checks it under the same name
/// (`warden_api::forwarded::PROXY_SECRET_HEADER`); the process-level tests of
/// `warden up` fail if the two ever differ.
pub const SECRET_HEADER: HeaderName = HeaderName::from_static("x-warden-proxy-secret");

/// The environment variable in which instances get the secret
/// (`warden_api::forwarded::PROXY_SECRET_ENV`): never on a command line, which any
/// local user can read.
pub const SECRET_ENV: &str = "WARDEN_PROXY_SECRET";

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

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
    /// Distinct clients per window, and the affected ones.
    clients: Arc<Clients>,
    /// Sent in [`SECRET_HEADER`]; marked sensitive, so a debug print of the headers
    /// does not show it.
    forwarding_secret: HeaderValue,
}

type ProxyBody = Either<Tracked, Full<Bytes>>;

impl Proxy {
    /// A proxy routing to `routes`, its metrics registered in `registry`, giving an
    /// instance `upstream_timeout` to answer. It counts clients with the default
    /// window and objective under a random key (see [`Proxy::with_clients`]).
    pub fn new(
        routes: Routes,
        registry: &prometheus::Registry,
        upstream_timeout: Duration,
    ) -> anyhow::Result<Arc<Self>> {
        Self::with_clients(
            routes,
            registry,
            upstream_timeout,
            ClientCounting::default(),
        )
    }

    /// [`Proxy::new`], counting clients as `counting` says.
    pub fn with_clients(
        routes: Routes,
        registry: &prometheus::Registry,
        upstream_timeout: Duration,
        counting: ClientCounting,
    ) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            routes: ArcSwap::from_pointee(routes),
            metrics: Metrics::new(registry)?,
            readiness: Notify::new(),
            wait_for_instance: Duration::from_secs(10),
            upstream_timeout,
            canary_draw: AtomicU64::new(0),
            clients: Arc::new(Clients::new(&counting, registry)?),
            forwarding_secret: new_forwarding_secret()?,
        }))
    }

    /// The secret this proxy sends instances in [`SECRET_HEADER`]: 256 random bits,
    /// made at start and kept in memory only, so it changes with every run (the
    /// instances are started by the same process, and restarted with it).
    #[must_use]
    pub fn forwarding_secret(&self) -> &str {
        self.forwarding_secret.to_str().unwrap_or_default()
    }

    /// The client windows that have ended, merged over the event loops, oldest
    /// first; each is handed out once. For the control plane to store.
    #[must_use]
    pub fn take_closed_windows(&self) -> Vec<ClientWindow> {
        self.clients.take_closed(warden_store::now_ms())
    }

    /// Every client window, the current one too (ending now), for the last write
    /// at shutdown. Counting goes on; requests after this land in a window that
    /// starts where the current one did, which the store merges with this one.
    #[must_use]
    pub fn take_all_windows(&self) -> Vec<ClientWindow> {
        self.clients.take_all(warden_store::now_ms())
    }

    /// A response slower than this marks its client affected.
    #[must_use]
    pub fn latency_objective(&self) -> Duration {
        self.clients.objective
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
    /// `timeouts` close client connections that are slow to send a request head or
    /// idle too long; unused connections to instances are kept for
    /// [`upstream_idle`]`(instance_idle)`, `instance_idle` being the instances' own
    /// idle timeout.
    pub fn spawn(
        self: &Arc<Self>,
        listener: std::net::TcpListener,
        threads: usize,
        timeouts: Timeouts,
        instance_idle: Duration,
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
                            let shard = proxy.clients.shard();
                            // One loop closes the windows of idle loops too, so
                            // the gauges move on without traffic.
                            let clients = Arc::clone(&proxy.clients);
                            let closer = async move {
                                if n > 0 {
                                    return std::future::pending().await;
                                }
                                let mut tick = tokio::time::interval(Duration::from_secs(1));
                                loop {
                                    tick.tick().await;
                                    clients.sweep(warden_store::now_ms());
                                }
                            };
                            tokio::select! {
                                () = proxy.accept_loop(listener, shard, timeouts, instance_idle) => {}
                                () = closer => {}
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

    /// Accepts connections on this thread's runtime until the task is dropped,
    /// counting clients in `shard`.
    async fn accept_loop(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shard: Arc<Shard>,
        timeouts: Timeouts,
        instance_idle: Duration,
    ) {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(upstream_idle(instance_idle))
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
            let connection = Arc::new(Connection {
                forwarded_for: HeaderValue::from_str(&peer.ip().to_string()).ok(),
                address_key: self.clients.address_key(peer.ip()),
                shard: Arc::clone(&shard),
                last_token: Mutex::new(None),
                last_count: Mutex::new(None),
            });
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let (proxy, client, connection) =
                        (Arc::clone(&proxy), client.clone(), Arc::clone(&connection));
                    async move { Ok::<_, Infallible>(proxy.handle(&client, request, &connection).await) }
                });
                // Closed when the client is slow to send a request head, or idle.
                if let Err(error) =
                    serve_connection(stream, service, timeouts, std::future::pending()).await
                {
                    tracing::debug!(%error, %peer, "proxy connection ended with an error");
                }
            });
        }
    }

    /// Answers one request and counts its client: affected when the answer is a
    /// 5xx or slower than the objective (for a streamed body, when it ends).
    async fn handle(
        &self,
        client: &Client<HttpConnector, Full<Bytes>>,
        request: Request<Incoming>,
        connection: &Arc<Connection>,
    ) -> Response<ProxyBody> {
        let started = Instant::now();
        let who = connection.identify(&self.clients, request.headers());
        let mut response = self
            .forward(client, request, connection.forwarded_for.as_ref(), started)
            .await;
        let failed = response.status().is_server_error();
        match response.body_mut() {
            Either::Left(streamed) => {
                streamed.mark = Some(Mark {
                    clients: Arc::clone(&self.clients),
                    connection: Arc::clone(connection),
                    client: who,
                    started,
                    failed,
                });
            }
            Either::Right(_) => {
                let slow = started.elapsed() > self.clients.objective;
                connection.record(&self.clients, who, failed || slow);
            }
        }
        response
    }

    async fn forward(
        &self,
        client: &Client<HttpConnector, Full<Bytes>>,
        request: Request<Incoming>,
        forwarded_for: Option<&HeaderValue>,
        started: Instant,
    ) -> Response<ProxyBody> {
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
        // The proxy is the edge: a client's claims about addresses, or a secret it
        // presents, are replaced by what the proxy itself vouches for.
        parts.headers.remove(X_FORWARDED_FOR);
        if let Some(value) = forwarded_for {
            parts.headers.insert(X_FORWARDED_FOR, value.clone());
        }
        parts
            .headers
            .insert(SECRET_HEADER, self.forwarding_secret.clone());
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
                    // Never back to a client, whatever an instance sends.
                    head.headers.remove(SECRET_HEADER);
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
                            mark: None,
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

/// How long the proxy keeps an unused connection to an instance whose own idle
/// timeout is `instance_idle`: half of it, and at most 30 s. It must stay below the
/// instance's: an instance closes a connection that has been idle that long, and a
/// request the proxy sent on it at that moment would fail. The pool drops a
/// connection idle longer than this before reusing it.
#[must_use]
pub fn upstream_idle(instance_idle: Duration) -> Duration {
    (instance_idle / 2).min(Duration::from_secs(30))
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

/// A random secret for [`SECRET_HEADER`], as 64 hex digits.
fn new_forwarding_secret() -> anyhow::Result<HeaderValue> {
    let mut value = HeaderValue::from_str(&hex::encode(rand::random::<[u8; 32]>()))?;
    value.set_sensitive(true);
    Ok(value)
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

/// A response body that keeps its request counted in flight until it is done, and
/// counts its client when it is dropped (finished, failed or abandoned).
struct Tracked {
    inner: Incoming,
    _guard: InflightGuard,
    mark: Option<Mark>,
}

/// The client of a streamed response, counted when the body is done.
struct Mark {
    clients: Arc<Clients>,
    connection: Arc<Connection>,
    client: u64,
    started: Instant,
    /// A 5xx, or the instance failed mid-body.
    failed: bool,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(mark) = self.mark.take() {
            let slow = mark.started.elapsed() > mark.clients.objective;
            mark.connection
                .record(&mark.clients, mark.client, mark.failed || slow);
        }
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Err(_))) = &polled
            && let Some(mark) = &mut this.mark
        {
            mark.failed = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

// ------------------------------------------------------------------- clients

/// What one accepted connection shares with its requests.
struct Connection {
    /// The peer's address, for `X-Forwarded-For`.
    forwarded_for: Option<HeaderValue>,
    /// The client key of the peer's address, for requests without a bearer token.
    address_key: u64,
    /// Where this event loop counts clients.
    shard: Arc<Shard>,
    /// The last `Authorization` header on this connection and its client key: a
    /// keep-alive connection mostly carries one user's requests, so the next one
    /// skips the HMAC.
    last_token: Mutex<Option<(HeaderValue, u64)>>,
    /// The last count from this connection: client, window start, affected. A
    /// repeat in the same window changes nothing, so it skips the shard's sketches.
    last_count: Mutex<Option<(u64, i64, bool)>>,
}

impl Connection {
    /// [`Clients::identify`], remembering the last header's key.
    fn identify(&self, clients: &Clients, headers: &hyper::HeaderMap) -> u64 {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return self.address_key;
        };
        let mut last = lock(&self.last_token);
        if let Some((seen, key)) = last.as_ref()
            && seen == value
        {
            return *key;
        }
        let key = clients.identify(headers, self.address_key);
        *last = Some((value.clone(), key));
        key
    }

    /// [`Clients::record`] in this connection's shard, unless this connection has
    /// already counted `client` in the current window, affected if `affected`.
    fn record(&self, clients: &Clients, client: u64, affected: bool) {
        let window = clients.window_start(warden_store::now_ms());
        let mut last = lock(&self.last_count);
        let counted = match *last {
            Some((seen, start, was_affected)) if seen == client && start == window => {
                Some(was_affected)
            }
            _ => None,
        };
        if counted.is_some_and(|was_affected| was_affected || !affected) {
            return;
        }
        clients.record(&self.shard, client, affected);
        *last = Some((client, window, affected || counted == Some(true)));
    }
}

/// How the proxy counts the users it serves (see the module documentation).
#[derive(Clone)]
pub struct ClientCounting {
    /// Key of the HMAC that names clients. Keep it for a data dir ([`client_key`]):
    /// windows counted under different keys cannot be unioned.
    pub key: [u8; 32],
    /// A response slower than this (until its last byte) marks its client affected.
    pub latency_objective: Duration,
    /// Length of a window; windows start at multiples of it since the Unix epoch,
    /// so a minute is a clock minute.
    pub window: Duration,
}

impl ClientCounting {
    /// The `LatencyHigh` alert's default p99 threshold: a user who waited longer
    /// than the alert tolerates was affected.
    pub const DEFAULT_LATENCY_OBJECTIVE: Duration = Duration::from_millis(500);
    /// A minute.
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

    /// Counting under `key` with the default objective and window.
    #[must_use]
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            key,
            latency_objective: Self::DEFAULT_LATENCY_OBJECTIVE,
            window: Self::DEFAULT_WINDOW,
        }
    }
}

impl Default for ClientCounting {
    /// A random key: fine for a proxy whose windows are not stored.
    fn default() -> Self {
        Self::new(rand::random())
    }
}

impl std::fmt::Debug for ClientCounting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCounting")
            .field("latency_objective", &self.latency_objective)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

/// The file in the data dir holding the client key.
pub const CLIENT_KEY_FILE: &str = "client-key";

/// The client key of `data_dir`: read from [`CLIENT_KEY_FILE`] (64 hex digits), or
/// made (random, owner-only) on first start. Deleting the file starts a new key;
/// windows from before then no longer union with later ones.
pub fn client_key(data_dir: &Path) -> anyhow::Result<[u8; 32]> {
    let path = data_dir.join(CLIENT_KEY_FILE);
    let parse = |text: &str| -> anyhow::Result<[u8; 32]> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut key).with_context(|| {
            format!(
                "{} is not a client key (64 hex digits); delete it to make a new one",
                path.display()
            )
        })?;
        Ok(key)
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => return parse(&text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            return Err(error).with_context(|| format!("cannot read {}", path.display()));
        }
    }
    let key: [u8; 32] = rand::random();
    let mut file = tempfile::NamedTempFile::new_in(data_dir)
        .with_context(|| format!("cannot write in {}", data_dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    std::io::Write::write_all(&mut file, hex::encode(key).as_bytes())?;
    file.as_file().sync_all()?;
    match file.persist_noclobber(&path) {
        Ok(_) => Ok(key),
        // Another process made it first: use theirs.
        Err(error) if error.error.kind() == std::io::ErrorKind::AlreadyExists => {
            parse(&std::fs::read_to_string(&path)?)
        }
        Err(error) => Err(error.error).with_context(|| format!("cannot write {}", path.display())),
    }
}

type HmacSha256 = Hmac<Sha256>;

/// Windows kept for the control plane at most; older ones are dropped (a proxy
/// whose windows nobody takes, as in a benchmark, stays bounded).
const MAX_CLOSED_WINDOWS: usize = 120;

/// One event loop's window: only its own requests lock it, and the closer once
/// a second.
type Shard = Mutex<ClientWindow>;

/// The proxy's client counting.
struct Clients {
    /// Keyed once; cloned per hash.
    mac: HmacSha256,
    objective: Duration,
    window_ms: i64,
    /// One per event loop.
    shards: Mutex<Vec<Arc<Shard>>>,
    closed: Mutex<Closed>,
    clients_gauge: prometheus::IntGauge,
    affected_gauge: prometheus::IntGauge,
}

/// Ended windows not yet taken, by start.
struct Closed {
    windows: BTreeMap<i64, ClientWindow>,
    /// Start of the window the gauges show.
    published: i64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Counting cannot be left half done by a panic in a way that matters.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Clients {
    fn new(counting: &ClientCounting, registry: &prometheus::Registry) -> anyhow::Result<Self> {
        anyhow::ensure!(
            counting.window >= Duration::from_secs(1)
                && counting.window <= Duration::from_secs(3600),
            "the client window (--client-window, WARDEN_CLIENT_WINDOW) must be between 1s \
             and 1h, got {:?}",
            counting.window
        );
        anyhow::ensure!(
            !counting.latency_objective.is_zero(),
            "the latency objective (--latency-objective, WARDEN_LATENCY_OBJECTIVE) must be \
             above zero"
        );
        let clients_gauge = prometheus::IntGauge::new(
            "warden_proxy_clients",
            "Distinct clients (by bearer token, else address) the front proxy answered in \
             the last completed window (a minute by default). Not by release: a user \
             during a canary may be served by both.",
        )?;
        let affected_gauge = prometheus::IntGauge::new(
            "warden_proxy_clients_affected",
            "Of warden_proxy_clients, those that got at least one failed (5xx, reset) or \
             slow (over the latency objective) response.",
        )?;
        registry.register(Box::new(clients_gauge.clone()))?;
        registry.register(Box::new(affected_gauge.clone()))?;
        Ok(Self {
            mac: <HmacSha256 as Mac>::new_from_slice(&counting.key)
                .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length")),
            objective: counting.latency_objective,
            window_ms: i64::try_from(counting.window.as_millis()).unwrap_or(60_000),
            shards: Mutex::new(Vec::new()),
            closed: Mutex::new(Closed {
                windows: BTreeMap::new(),
                published: i64::MIN,
            }),
            clients_gauge,
            affected_gauge,
        })
    }

    /// Start of the window `at_ms` falls in.
    fn window_start(&self, at_ms: i64) -> i64 {
        at_ms - at_ms.rem_euclid(self.window_ms)
    }

    fn empty_window(&self, at_ms: i64) -> ClientWindow {
        let start = self.window_start(at_ms);
        ClientWindow::new(start, start.saturating_add(self.window_ms))
    }

    /// A new event loop's shard.
    fn shard(&self) -> Arc<Shard> {
        let shard = Arc::new(Mutex::new(self.empty_window(warden_store::now_ms())));
        lock(&self.shards).push(Arc::clone(&shard));
        shard
    }

    fn hash(&self, kind: u8, bytes: &[u8]) -> u64 {
        let mut mac = self.mac.clone();
        mac.update(&[kind]);
        mac.update(bytes);
        let digest = mac.finalize().into_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }

    /// The client key of an address (IPv4-mapped IPv6 as IPv4).
    fn address_key(&self, ip: IpAddr) -> u64 {
        match ip.to_canonical() {
            IpAddr::V4(v4) => self.hash(b'4', &v4.octets()),
            IpAddr::V6(v6) => self.hash(b'6', &v6.octets()),
        }
    }

    /// The client of a request: its bearer token's key, else its address's.
    fn identify(&self, headers: &hyper::HeaderMap, address_key: u64) -> u64 {
        match headers
            .get(header::AUTHORIZATION)
            .and_then(|v| bearer(v.as_bytes()))
        {
            Some(token) => self.hash(b't', token),
            None => address_key,
        }
    }

    /// Counts `client` now in `shard`; when the shard's window has ended, it is
    /// closed first.
    fn record(&self, shard: &Shard, client: u64, affected: bool) {
        let now = warden_store::now_ms();
        let ended = {
            let mut window = lock(shard);
            // A request that read the clock before the closer moved the shard on
            // counts in the newer window.
            let ended = (self.window_start(now) > window.start_ms)
                .then(|| std::mem::replace(&mut *window, self.empty_window(now)));
            window.clients.insert(client);
            if affected {
                window.affected.insert(client);
            }
            ended
        };
        if let Some(ended) = ended {
            self.close(ended);
        }
    }

    /// Keeps an ended (or, at shutdown, the current) window of one loop, merged
    /// with the other loops' share of it.
    fn close(&self, window: ClientWindow) {
        if window.clients.is_empty() {
            return;
        }
        let mut closed = lock(&self.closed);
        closed
            .windows
            .entry(window.start_ms)
            .and_modify(|kept| kept.merge(&window))
            .or_insert(window);
        while closed.windows.len() > MAX_CLOSED_WINDOWS {
            if let Some((start, _)) = closed.windows.pop_first() {
                tracing::warn!(
                    start_ms = start,
                    "client window dropped: nobody took it for the store"
                );
            }
        }
    }

    /// Closes the shards' windows that have ended by `now_ms` and shows the last
    /// ended window on the gauges.
    fn sweep(&self, now_ms: i64) {
        let current = self.window_start(now_ms);
        let shards = lock(&self.shards).clone();
        for shard in shards {
            let ended = {
                let mut window = lock(&shard);
                (window.start_ms < current)
                    .then(|| std::mem::replace(&mut *window, self.empty_window(now_ms)))
            };
            if let Some(ended) = ended {
                self.close(ended);
            }
        }
        let last = current - self.window_ms;
        let mut closed = lock(&self.closed);
        if closed.published < last {
            let (clients, affected) = closed.windows.get(&last).map_or((0, 0), |w| {
                let clients = w.clients.estimate();
                (clients, w.affected.estimate().min(clients))
            });
            self.clients_gauge
                .set(i64::try_from(clients).unwrap_or(i64::MAX));
            self.affected_gauge
                .set(i64::try_from(affected).unwrap_or(i64::MAX));
            closed.published = last;
        }
    }

    /// [`Proxy::take_closed_windows`] at `now_ms`.
    fn take_closed(&self, now_ms: i64) -> Vec<ClientWindow> {
        self.sweep(now_ms);
        let current = self.window_start(now_ms);
        let mut closed = lock(&self.closed);
        let open = closed.windows.split_off(&current);
        std::mem::replace(&mut closed.windows, open)
            .into_values()
            .collect()
    }

    /// [`Proxy::take_all_windows`] at `now_ms`.
    fn take_all(&self, now_ms: i64) -> Vec<ClientWindow> {
        self.sweep(now_ms);
        let shards = lock(&self.shards).clone();
        for shard in shards {
            let mut partial = {
                let mut window = lock(&shard);
                let fresh = ClientWindow::new(window.start_ms, window.end_ms);
                std::mem::replace(&mut *window, fresh)
            };
            partial.end_ms = partial.end_ms.min(now_ms.max(partial.start_ms + 1));
            self.close(partial);
        }
        std::mem::take(&mut lock(&self.closed).windows)
            .into_values()
            .collect()
    }
}

/// The token of an `Authorization: Bearer TOKEN` header value.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, token) = value.split_at(space);
    let token = token.trim_ascii();
    (scheme.eq_ignore_ascii_case(b"bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use warden_telemetry::probe::{get_on, until_closed};

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
        let threads = proxy
            .spawn(listener, 1, Timeouts::default(), Timeouts::DEFAULT_IDLE)
            .unwrap();
        let started = std::time::Instant::now();
        let response = reqwest::get(format!("http://{addr}/v1/items"))
            .await
            .unwrap();
        assert_eq!(response.status(), 504);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(backend.inflight(), 0, "the request is no longer counted");
        // Its client was affected.
        assert_eq!(union(&proxy.take_all_windows()), (1, 1));
        threads.stop();
        drop(silent);
    }

    #[tokio::test]
    async fn instances_get_the_real_client_address_and_the_secret_clients_do_not() {
        // Echoes the two headers it got, and tries to send the secret back.
        let echo = axum::Router::new().route(
            "/echo",
            axum::routing::get(|headers: hyper::HeaderMap| async move {
                let all = |name: &str| -> Vec<String> {
                    headers
                        .get_all(name)
                        .iter()
                        .map(|v| v.to_str().unwrap().to_owned())
                        .collect()
                };
                let secret = all("x-warden-proxy-secret").join("|");
                (
                    [("x-warden-proxy-secret", secret.clone())],
                    format!("{}\n{secret}", all("x-forwarded-for").join("|")),
                )
            }),
        );
        let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend = upstream.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(upstream, echo).await.unwrap() });
        let proxy = Proxy::new(
            ready("v1", backend),
            &prometheus::Registry::new(),
            Duration::from_secs(5),
        )
        .unwrap();
        let secret = proxy.forwarding_secret().to_owned();
        assert_eq!(secret.len(), 64);
        let other = Proxy::new(
            ready("v1", backend),
            &prometheus::Registry::new(),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_ne!(
            other.forwarding_secret(),
            secret,
            "a new secret for every proxy"
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let threads = proxy
            .spawn(listener, 1, Timeouts::default(), Timeouts::DEFAULT_IDLE)
            .unwrap();

        let client = reqwest::Client::builder()
            .local_address(IpAddr::from([127, 0, 0, 2]))
            .build()
            .unwrap();
        let response = client
            .get(format!("http://{addr}/echo"))
            .header("x-forwarded-for", "198.51.100.1")
            .header("x-forwarded-for", "198.51.100.2, 198.51.100.3")
            .header("x-warden-proxy-secret", "forged")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            !response.headers().contains_key("x-warden-proxy-secret"),
            "the secret went back to the client"
        );
        let body = response.text().await.unwrap();
        assert_eq!(body, format!("127.0.0.2\n{secret}"));
        threads.stop();
    }

    /// Every window merged into one.
    fn union(windows: &[ClientWindow]) -> (u64, u64) {
        let mut all = ClientWindow::default();
        for window in windows {
            all.merge(window);
        }
        let clients = all.clients.estimate();
        (clients, all.affected.estimate().min(clients))
    }

    /// An upstream like the API: `/ok`, `/fail` (500), `/slow` (300 ms) and `/big`
    /// (a 200 kB body, streamed through the proxy).
    async fn api_like() -> SocketAddr {
        let app = axum::Router::new()
            .route("/ok", axum::routing::get(|| async { "ok" }))
            .route(
                "/fail",
                axum::routing::get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "no") }),
            )
            .route(
                "/slow",
                axum::routing::get(|| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "late"
                }),
            )
            .route("/big", axum::routing::get(|| async { "x".repeat(200_000) }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }

    fn ready(release: &str, addr: SocketAddr) -> Routes {
        let backend = Backend::new(release, addr);
        backend.set_ready(true);
        Routes::to(Upstream::new(release, vec![backend]))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn distinct_bearer_tokens_are_counted_and_failed_or_slow_ones_affected() {
        let registry = prometheus::Registry::new();
        let counting = ClientCounting {
            latency_objective: Duration::from_millis(150),
            ..ClientCounting::new([7; 32])
        };
        let proxy = Proxy::with_clients(
            ready("v1", api_like().await),
            &registry,
            Duration::from_secs(60),
            counting,
        )
        .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let threads = proxy
            .spawn(listener, 2, Timeouts::default(), Timeouts::DEFAULT_IDLE)
            .unwrap();
        // Windows are aligned to the clock: start with at least 10 s of this one
        // left, so that every request below counts in it.
        let window_of = |ms: i64| proxy.clients.window_start(ms);
        while window_of(warden_store::now_ms() + 10_000) != window_of(warden_store::now_ms()) {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        // A connection per request, so requests land on both event loops.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let get = |path: &str, token: Option<&str>| {
            let request = http.get(format!("http://{addr}{path}"));
            let request = match token {
                Some(token) => request.bearer_auth(token),
                None => request,
            };
            async move {
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                (status, response.bytes().await.unwrap().len())
            }
        };
        for token in ["alice", "bob", "carol"] {
            for _ in 0..3 {
                assert_eq!(get("/ok", Some(token)).await.0, 200);
            }
        }
        assert_eq!(get("/ok", None).await.0, 200, "a client by address");
        assert_eq!(get("/fail", Some("dave")).await.0, 500);
        assert_eq!(get("/ok", Some("dave")).await.0, 200);
        assert_eq!(get("/slow", Some("erin")).await.0, 200);
        assert_eq!(get("/big", Some("frank")).await, (200, 200_000));
        // The streamed body is counted when hyper drops it, just after the client
        // has it all.
        tokio::time::sleep(Duration::from_millis(200)).await;

        // A window later, the gauges show the last ended window, and the windows
        // are handed out once.
        let later = warden_store::now_ms() + proxy.clients.window_ms;
        proxy.clients.sweep(later);
        let windows = proxy.clients.take_closed(later);
        assert!(!windows.is_empty());
        assert!(proxy.clients.take_closed(later).is_empty());
        let last = windows.last().unwrap();
        assert_eq!(
            (
                proxy.clients.clients_gauge.get(),
                proxy.clients.affected_gauge.get()
            ),
            (
                last.clients.estimate() as i64,
                last.affected.estimate() as i64
            )
        );
        // alice, bob, carol, the address, dave, erin, frank; dave (500) and erin
        // (300 ms > 150 ms) affected.
        assert_eq!(union(&windows), (7, 2));
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        assert!(
            names.iter().any(|n| n == "warden_proxy_clients"),
            "{names:?}"
        );
        assert!(names.iter().any(|n| n == "warden_proxy_clients_affected"));
        threads.stop();
    }

    #[tokio::test]
    async fn an_instance_that_resets_mid_body_marks_its_client_affected() {
        // Promises 200 kB, sends 1 kB, closes.
        let reset = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = reset.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut stream, _)) = reset.accept().await {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let mut response = b"HTTP/1.1 200 OK\r\ncontent-length: 200000\r\n\r\n".to_vec();
                response.extend_from_slice(&[b'x'; 1000]);
                let _ = stream.write_all(&response).await;
            }
        });
        let proxy = Proxy::new(
            ready("v1", upstream),
            &prometheus::Registry::new(),
            Duration::from_secs(60),
        )
        .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let threads = proxy
            .spawn(listener, 1, Timeouts::default(), Timeouts::DEFAULT_IDLE)
            .unwrap();
        let response = reqwest::Client::new()
            .get(format!("http://{addr}/big"))
            .bearer_auth("grace")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.bytes().await.is_err(), "the body was cut");
        let mut windows = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while union(&windows) != (1, 1) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            windows.extend(proxy.take_all_windows());
        }
        assert_eq!(union(&windows), (1, 1));
        threads.stop();
    }

    #[tokio::test]
    async fn slow_and_idle_clients_are_closed_and_prompt_ones_kept() {
        use tokio::io::AsyncWriteExt;
        let timeouts = Timeouts {
            header_read: Duration::from_millis(300),
            idle: Duration::from_secs(1),
        };
        let proxy = Proxy::new(
            ready("v1", api_like().await),
            &prometheus::Registry::new(),
            Duration::from_secs(5),
        )
        .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let threads = proxy
            .spawn(listener, 1, timeouts, Timeouts::DEFAULT_IDLE)
            .unwrap();
        let early = Duration::from_millis(10);

        // Sends nothing.
        let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        let after = until_closed(&mut silent, "silent").await;
        assert!(
            after >= timeouts.header_read - early,
            "closed after {after:?}"
        );

        // Sends half a head and stalls.
        let mut half = tokio::net::TcpStream::connect(addr).await.unwrap();
        half.write_all(b"GET /ok HTTP/1.1\r\nHost: test\r\n")
            .await
            .unwrap();
        let after = until_closed(&mut half, "half a head").await;
        assert!(
            after >= timeouts.header_read - early,
            "closed after {after:?}"
        );

        // Keep-alive: served, kept past the header timeout, closed after the idle one.
        let mut kept = tokio::net::TcpStream::connect(addr).await.unwrap();
        let response = get_on(&mut kept, "/ok", "keep-alive").await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        tokio::time::sleep(timeouts.header_read * 2).await;
        let response = get_on(&mut kept, "/ok", "keep-alive").await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        let after = until_closed(&mut kept, "keep-alive").await;
        assert!(after >= timeouts.idle - early, "closed after {after:?}");
        threads.stop();
    }

    #[test]
    fn unused_upstream_connections_are_dropped_well_before_the_instance_would() {
        for (instance, pool) in [
            (Duration::from_secs(60), Duration::from_secs(30)),
            (Duration::from_secs(600), Duration::from_secs(30)),
            (Duration::from_secs(1), Duration::from_millis(500)),
            (Duration::from_millis(1), Duration::from_micros(500)),
        ] {
            assert_eq!(upstream_idle(instance), pool);
            assert!(upstream_idle(instance) < instance);
        }
    }

    #[test]
    fn windows_close_when_they_end_and_all_are_taken_at_shutdown() {
        let registry = prometheus::Registry::new();
        let counting = ClientCounting {
            window: Duration::from_secs(3600),
            ..ClientCounting::new([1; 32])
        };
        let clients = Clients::new(&counting, &registry).unwrap();
        let (a, b) = (clients.shard(), clients.shard());
        clients.record(&a, 1, false);
        clients.record(&b, 1, true);
        clients.record(&b, 2, false);
        let now = warden_store::now_ms();
        // Nothing has ended yet.
        assert!(clients.take_closed(now).is_empty());
        assert_eq!(clients.clients_gauge.get(), 0);
        // At shutdown the current window is taken, ending now, both loops merged.
        let all = clients.take_all(now);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].start_ms, clients.window_start(now));
        assert!(all[0].end_ms <= now.max(all[0].start_ms + 1));
        assert_eq!(union(&all), (2, 1));
        // Counting goes on in the same window.
        clients.record(&a, 3, false);
        let later = now + 3_600_000;
        let rest = clients.take_closed(later);
        assert_eq!(union(&rest), (1, 0));
        assert_eq!(rest[0].start_ms, all[0].start_ms);
        assert_eq!(clients.clients_gauge.get(), 1);
        // An hour of no traffic later the gauges say so.
        clients.sweep(later + 3_600_000);
        assert_eq!(clients.clients_gauge.get(), 0);
        // Bad settings are refused.
        for bad in [
            ClientCounting {
                window: Duration::from_millis(10),
                ..ClientCounting::new([1; 32])
            },
            ClientCounting {
                latency_objective: Duration::ZERO,
                ..ClientCounting::new([1; 32])
            },
        ] {
            assert!(Clients::new(&bad, &prometheus::Registry::new()).is_err());
        }
    }

    #[test]
    fn a_connection_counts_its_repeats_once_and_an_affected_repeat_again() {
        let registry = prometheus::Registry::new();
        let counting = ClientCounting {
            window: Duration::from_secs(3600),
            ..ClientCounting::new([1; 32])
        };
        let clients = Clients::new(&counting, &registry).unwrap();
        let address_key = clients.address_key(IpAddr::from([127, 0, 0, 1]));
        let connection = Connection {
            forwarded_for: None,
            address_key,
            shard: clients.shard(),
            last_token: Mutex::new(None),
            last_count: Mutex::new(None),
        };
        let headers = |value: &str| {
            let mut headers = hyper::HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            headers
        };
        // The remembered key is the one the token hashes to; another token, another.
        let ann = connection.identify(&clients, &headers("Bearer ann"));
        assert_eq!(ann, clients.identify(&headers("Bearer ann"), address_key));
        assert_eq!(connection.identify(&clients, &headers("Bearer ann")), ann);
        let bob = connection.identify(&clients, &headers("Bearer bob"));
        assert_eq!(bob, clients.identify(&headers("Bearer bob"), address_key));
        assert_ne!(ann, bob);
        assert_eq!(
            connection.identify(&clients, &hyper::HeaderMap::new()),
            address_key
        );
        // Repeats count once; a failed repeat still marks the client affected.
        for affected in [false, false, true, false, true] {
            connection.record(&clients, ann, affected);
        }
        connection.record(&clients, bob, false);
        connection.record(&clients, ann, false);
        assert_eq!(union(&clients.take_all(warden_store::now_ms())), (2, 1));
    }

    #[test]
    fn clients_are_a_keyed_hash_of_the_bearer_token_else_the_address() {
        let registry = prometheus::Registry::new();
        let clients = Clients::new(&ClientCounting::new([3; 32]), &registry).unwrap();
        let again =
            Clients::new(&ClientCounting::new([3; 32]), &prometheus::Registry::new()).unwrap();
        let other =
            Clients::new(&ClientCounting::new([4; 32]), &prometheus::Registry::new()).unwrap();
        let headers = |value: &str| {
            let mut headers = hyper::HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            headers
        };
        let address = clients.address_key("127.0.0.1".parse().unwrap());
        let token = clients.identify(&headers("Bearer abc"), address);
        assert_eq!(clients.identify(&headers("bearer  abc "), address), token);
        assert_eq!(again.identify(&headers("Bearer abc"), address), token);
        assert_ne!(other.identify(&headers("Bearer abc"), address), token);
        assert_ne!(clients.identify(&headers("Bearer abd"), address), token);
        // No bearer token: the address.
        for value in ["Basic dTpw", "Bearer", "Bearer ", "abc"] {
            assert_eq!(clients.identify(&headers(value), address), address);
        }
        assert_eq!(clients.identify(&hyper::HeaderMap::new(), address), address);
        assert_eq!(
            clients.address_key("::ffff:127.0.0.1".parse().unwrap()),
            address,
            "an IPv4-mapped address is the IPv4 one"
        );
        assert_ne!(clients.address_key("127.0.0.2".parse().unwrap()), address);
    }

    #[test]
    fn the_client_key_is_made_once_owner_only_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let key = client_key(dir.path()).unwrap();
        let path = dir.path().join(CLIENT_KEY_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(client_key(dir.path()).unwrap(), key);
        assert_eq!(std::fs::read_to_string(&path).unwrap().len(), 64);
        std::fs::write(&path, "not hex").unwrap();
        let error = client_key(dir.path()).unwrap_err();
        assert!(format!("{error:#}").contains("client-key"), "{error:#}");
    }
}
