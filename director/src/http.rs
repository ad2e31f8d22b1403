//! The read-only HTTP status endpoint: `/status` (JSON), `/metrics` (Prometheus),
//! `/healthz` (liveness) and `/` (a page for people). Every response is rendered from
//! the latest published state; nothing here touches the kernel.

use crate::agents::AgentMap;
use crate::status::{self, ReloadStatus, Status};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse, Json};
use axum::routing::get;
use axum::Router;
use lvsdr::model::Desired;
use lvsdr::reconcile::Gate;
use lvsdr::reconcile::ReconcileState;
use lvsdr_checks::{DetailMap, HealthMap};
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::status::{metrics, page};

/// Where the endpoint reads from.
#[derive(Clone)]
pub struct Sources {
    pub desired: watch::Receiver<Arc<Desired>>,
    pub state: watch::Receiver<ReconcileState>,
    pub health: watch::Receiver<HealthMap>,
    pub details: watch::Receiver<DetailMap>,
    pub reload: watch::Receiver<ReloadStatus>,
    pub gate: watch::Receiver<Gate>,
    pub agents: watch::Receiver<AgentMap>,
    /// The last 15 minutes per service, for the page.
    pub history: watch::Receiver<crate::status::history::History>,
    /// The announcer's verdict per VIP (`[announce]`).
    pub announce: watch::Receiver<Vec<crate::announce::Verdict>>,
    /// The config's VIPs this host holds on an interface ARP answers for.
    pub held: watch::Receiver<Vec<std::net::IpAddr>>,
    /// BIRD's view (`[announce] bird_socket`).
    pub bird: watch::Receiver<Option<crate::status::BirdStatus>>,
    /// When the director started (liveness before the first pass).
    pub started: std::time::Instant,
    /// Health check runs completed, and local errors among them.
    pub checks: Arc<lvsdr_checks::Tally>,
    /// Traffic counters of busy services, read apart from the reconciler.
    pub counters: watch::Receiver<lvsdr::reconcile::counters::Counters>,
    /// The `[[notify]]` hooks' deliveries.
    pub notify: watch::Receiver<Vec<crate::status::HookStatus>>,
    /// One render at a time (see [`off_thread`]).
    pub renders: Arc<tokio::sync::Semaphore>,
}

impl Sources {
    /// Everything the status document is built from, at this moment.
    pub fn snapshot(&self) -> status::Snapshot {
        use std::sync::atomic::Ordering::Relaxed;
        let mut state = self.state.borrow().clone();
        state.observed = Arc::new(self.counters.borrow().overlay(&state.observed));
        let tally = &self.checks;
        status::Snapshot {
            desired: self.desired.borrow().clone(),
            state,
            health: self.health.borrow().clone(),
            details: self.details.borrow().clone(),
            reload: self.reload.borrow().clone(),
            gate: self.gate.borrow().clone(),
            agents: self.agents.borrow().clone(),
            announce: self.announce.borrow().clone(),
            held: self.held.borrow().clone(),
            bird: self.bird.borrow().clone(),
            notify: self.notify.borrow().clone(),
            checks: status::CheckCounts {
                completed: tally.completed.load(Relaxed),
                local_errors: tally.local_errors.load(Relaxed),
                inconclusive: tally.inconclusive.load(Relaxed),
                stalled_seconds: tally.stalled_us.load(Relaxed) as f64 / 1e6,
                lateness: tally.lateness.snapshot(),
            },
        }
    }

    /// The status document (blocking work: call it off the runtime thread).
    pub fn status(&self) -> Status {
        status::build(&self.snapshot())
    }
}

pub fn router(sources: Sources) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/status", get(status_json))
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .with_state(sources)
}

impl Sources {
    /// Whether the reconciler is alive (see [`lvsdr::reconcile::liveness`]).
    pub fn alive(&self) -> Result<(), lvsdr::reconcile::Stuck> {
        let resync = self.desired.borrow().director.resync_interval;
        let state = self.state.borrow();
        lvsdr::reconcile::liveness(&state, resync, self.started, std::time::Instant::now())
    }
}

/// 200 while the reconciler makes passes; 503 with the reason when it is stuck.
async fn healthz(State(s): State<Sources>) -> axum::response::Response {
    match s.alive() {
        Ok(()) => "ok\n".into_response(),
        Err(why) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("{why}\n"),
        )
            .into_response(),
    }
}

/// Runs `f` on a blocking thread: building and rendering the status of 10,000
/// services takes long enough to stall the director's one runtime thread (the
/// checks, the reconciler) if done there. One render at a time (`gate`): a render
/// that outlives its client's patience goes on (a blocking thread cannot be
/// cancelled) and a client asking again started another, so renders piled up, each
/// holding its whole document (1.4 GB and every core at 10,000 × 10 services under
/// emulation). The permit goes with the render; a request whose client leaves while
/// it waits starts none.
async fn off_thread<T: Send + 'static>(
    gate: &Arc<tokio::sync::Semaphore>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, axum::response::Response> {
    let failed = |e: String| {
        (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("rendering failed: {e}\n"),
        )
            .into_response()
    };
    let permit = gate
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| failed(e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let out = f();
        drop(permit);
        out
    })
    .await
    .map_err(|e| {
        (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("rendering failed: {e}\n"),
        )
            .into_response()
    })
}

async fn status_json(State(s): State<Sources>) -> axum::response::Response {
    match off_thread(&s.renders.clone(), move || Json(s.status()).into_response()).await {
        Ok(r) | Err(r) => r,
    }
}

/// OpenMetrics for a scraper that asks for it (Prometheus does), the Prometheus text
/// format otherwise.
async fn metrics_text(
    State(s): State<Sources>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    let openmetrics = headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let rendered = match off_thread(&s.renders.clone(), move || metrics::render(&s.status())).await
    {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    match rendered {
        Ok(text) => {
            let (kind, body) = lvsdr_daemon::metrics::negotiated(openmetrics, text);
            ([(CONTENT_TYPE, kind)], body).into_response()
        }
        Err(e) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("metrics: {e}\n"),
        )
            .into_response(),
    }
}

async fn index(State(s): State<Sources>) -> axum::response::Response {
    match off_thread(&s.renders.clone(), move || {
        let status = s.status();
        let history = s.history.borrow();
        let now = crate::status::epoch(std::time::SystemTime::now());
        Html(page::render(&status, &history, now)).into_response()
    })
    .await
    {
        Ok(r) | Err(r) => r,
    }
}

/// Connections served at once; more are closed as they come. The endpoint is for
/// operators and a scraper: a few connections.
pub const MAX_CONNECTIONS: usize = 64;

/// A request's headers must arrive within this (from the end of the previous request
/// on a kept-alive connection: the idle timeout too).
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a response may stand still because the client does not read it. A client
/// that asked for a large `/status` and never read held its connection slot for ever;
/// [`MAX_CONNECTIONS`] of them closed the endpoint (`/healthz` too) to everyone.
pub const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The endpoint's bounds (the tests' are small).
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_connections: usize,
    pub write_timeout: std::time::Duration,
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds {
            max_connections: MAX_CONNECTIONS,
            write_timeout: WRITE_TIMEOUT,
        }
    }
}

/// Serves until cancelled. Bounded, so that idle or slow clients cannot take the file
/// descriptors the health checks need: at most [`MAX_CONNECTIONS`], headers within
/// [`HEADER_TIMEOUT`], no write standing still past [`WRITE_TIMEOUT`], and `accept`
/// backs off when descriptors run out.
pub async fn serve(
    listener: tokio::net::TcpListener,
    sources: Sources,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    serve_with(listener, sources, Bounds::default(), cancel).await
}

/// [`serve`] within `bounds`.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    sources: Sources,
    bounds: Bounds,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let app = router(sources);
    let max = bounds.max_connections;
    let slots = Arc::new(tokio::sync::Semaphore::new(max));
    let mut refused = lvsdr_daemon::accept::Refusals::default();
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            c = lvsdr_daemon::accept::next(&listener, "status endpoint") => c,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if let Some(refused) = refused.count() {
                tracing::info!(%peer, refused, "status endpoint: {max} connections open; closing new ones");
            }
            continue; // dropping the stream closes it
        };
        let app = app.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let svc = hyper_util::service::TowerToHyperService::new(app);
            let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
            stream.set_write_timeout(Some(bounds.write_timeout));
            let stream = hyper_util::rt::TokioIo::new(Box::pin(stream));
            let conn = http.serve_connection(stream, svc);
            tokio::select! {
                _ = conn => {}
                _ = cancel.cancelled() => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    fn sources(services: usize) -> Sources {
        let mut text = String::from("[director]\nstatus_listen = \"127.0.0.1:9180\"\n");
        for i in 0..services {
            text.push_str(&format!(
                "[[service]]\nname = \"s{i}\"\nvip = \"10.{}.{}.1\"\nport = 80\n[service.check]\ntype = \"none\"\n[[service.real_server]]\naddress = \"10.200.0.1\"\n",
                i / 256,
                i % 256
            ));
        }
        let desired = lvsdr::config::parse(&text, "t.toml").expect("config");
        Sources {
            desired: watch::channel(Arc::new(desired)).1,
            state: watch::channel(ReconcileState::default()).1,
            health: watch::channel(HealthMap::new()).1,
            details: watch::channel(DetailMap::new()).1,
            reload: watch::channel(ReloadStatus {
                generation: 1,
                at: 0.0,
                ok: true,
                errors: vec![],
            })
            .1,
            gate: watch::channel(Gate::default()).1,
            agents: watch::channel(AgentMap::new()).1,
            history: watch::channel(crate::status::history::History::default()).1,
            announce: watch::channel(Vec::new()).1,
            held: watch::channel(Vec::new()).1,
            bird: watch::channel(None).1,
            started: std::time::Instant::now(),
            counters: watch::channel(Default::default()).1,
            notify: watch::channel(Vec::new()).1,
            checks: Default::default(),
            renders: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }

    /// Many requests at once render one at a time, and a request whose client left
    /// while it waited renders nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn renders_run_one_at_a_time_and_a_left_request_renders_nothing() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let gate = Arc::new(tokio::sync::Semaphore::new(1));
        let (now, most, ran) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let render = || {
            let (now, most, ran) = (now.clone(), most.clone(), ran.clone());
            move || {
                let n = now.fetch_add(1, SeqCst) + 1;
                most.fetch_max(n, SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(20));
                now.fetch_sub(1, SeqCst);
                ran.fetch_add(1, SeqCst);
            }
        };
        let all: Vec<_> = (0..8)
            .map(|_| {
                let (g, f) = (gate.clone(), render());
                tokio::spawn(async move { off_thread(&g, f).await.is_ok() })
            })
            .collect();
        for t in all {
            assert!(t.await.expect("task"));
        }
        assert_eq!((most.load(SeqCst), ran.load(SeqCst)), (1, 8));
        // A client that gives up while another render runs: nothing starts for it.
        let held = gate.clone().acquire_owned().await.expect("permit");
        let left = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            off_thread(&gate, render()),
        )
        .await;
        assert!(left.is_err(), "it did not wait");
        drop(held);
        // A render it had started would hold the permit until done: taking the permit
        // waits for any such render, so the count below is final.
        let _after = gate.acquire().await.expect("permit");
        assert_eq!(ran.load(SeqCst), 8, "a left request rendered");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn rendering_a_large_status_does_not_hold_the_runtime_thread() {
        let app = router(sources(2000));
        for path in ["/metrics", "/status", "/"] {
            let big = app.clone().oneshot(
                axum::http::Request::get(path)
                    .body(Body::empty())
                    .expect("req"),
            );
            let small = app.clone().oneshot(
                axum::http::Request::get("/healthz")
                    .body(Body::empty())
                    .expect("req"),
            );
            // Polled first, the big render must yield the thread, so that /healthz
            // (standing for the checks and the reconciler) answers before it.
            let first = tokio::select! {
                biased;
                _ = big => "the big render",
                _ = small => "/healthz",
            };
            assert_eq!(first, "/healthz", "{path} held the runtime thread");
        }
    }

    /// A client that asks for a large `/status` and never reads lets its connection
    /// go after the write timeout; before, it held the slot for ever, and with every
    /// slot so held nobody reached the endpoint, `/healthz` included.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_does_not_read_lets_its_connection_go() {
        use std::io::{Read, Write};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let cancel = CancellationToken::new();
        let bounds = Bounds {
            max_connections: 1,
            write_timeout: std::time::Duration::from_secs(1),
        };
        tokio::spawn(serve_with(listener, sources(6000), bounds, cancel.clone()));
        let outcome = tokio::task::spawn_blocking(move || {
            // Larger than both sides' socket buffers, and never read.
            let mut stalled = std::net::TcpStream::connect(addr).expect("connect");
            stalled
                .write_all(b"GET /status HTTP/1.1\r\nhost: t\r\n\r\n")
                .expect("request");
            let t0 = std::time::Instant::now();
            loop {
                let mut c = std::net::TcpStream::connect(addr).expect("connect");
                c.set_read_timeout(Some(std::time::Duration::from_secs(20)))
                    .expect("timeout");
                let mut answer = String::new();
                let asked = c
                    .write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
                    .and_then(|()| c.read_to_string(&mut answer));
                if asked.is_ok() && answer.starts_with("HTTP/1.1 ") {
                    return Ok(t0.elapsed());
                }
                if t0.elapsed() > std::time::Duration::from_secs(120) {
                    return Err("the stalled client kept the only slot for 120 s");
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        })
        .await
        .expect("client");
        cancel.cancel();
        let waited = outcome.expect("the endpoint came back");
        println!("the endpoint answered again after {waited:?}");
    }
}
