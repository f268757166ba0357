//! Request metrics for axum services.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{HistogramOpts, HistogramVec, IntGauge, Registry};

use crate::Telemetry;

/// Label used for requests that matched no route, so unknown paths cannot create
/// unbounded label values.
pub const UNMATCHED_ROUTE: &str = "unmatched";

#[derive(Clone)]
pub(crate) struct HttpMetrics {
    duration: HistogramVec,
    active: IntGauge,
}

impl HttpMetrics {
    pub(crate) fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_server_request_duration_seconds",
                "Duration of HTTP server requests, by method, route template and status.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &[
                "http_request_method",
                "http_route",
                "http_response_status_code",
            ],
        )?;
        let active = IntGauge::new(
            "http_server_active_requests",
            "Number of HTTP server requests in flight.",
        )?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(active.clone()))?;
        Ok(Self { duration, active })
    }
}

/// Decrements the in-flight gauge even when the handler future is dropped (client
/// went away, timeout), so the gauge cannot drift upwards.
struct InFlight(IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// axum middleware recording request duration and in-flight requests.
///
/// Install with `axum::middleware::from_fn_with_state(telemetry, track_requests)` as a
/// `route_layer`-independent outer layer; the route label comes from [`MatchedPath`].
pub async fn track_requests(
    State(telemetry): State<Telemetry>,
    request: Request,
    next: Next,
) -> Response {
    let metrics = &telemetry.inner.http;
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED_ROUTE.to_owned(), |p| p.as_str().to_owned());
    metrics.active.inc();
    let _in_flight = InFlight(metrics.active.clone());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics
        .duration
        .with_label_values(&[&method, &route, response.status().as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}
