//! The read-only HTTP status endpoint: `/status` (JSON), `/metrics` (Prometheus),
//! `/healthz` (liveness) and `/` (a page for people). Every response is rendered from
//! the latest published state; nothing here touches the kernel.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse, Json};
use axum::routing::get;
use axum::Router;
use lvsdr::agents::AgentMap;
use lvsdr::health::{DetailMap, HealthMap};
use lvsdr::model::Desired;
use lvsdr::reconcile::driver::ReconcileState;
use lvsdr::reconcile::Gate;
use lvsdr::status::{self, ReloadStatus, Status};
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{metrics, page};

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
    /// When the director started (liveness before the first pass).
    pub started: std::time::SystemTime,
}

impl Sources {
    fn status(&self) -> Status {
        // Clone out of each channel first: no lock is held while building.
        let desired = self.desired.borrow().clone();
        let state = self.state.borrow().clone();
        let health = self.health.borrow().clone();
        let details = self.details.borrow().clone();
        let reload = self.reload.borrow().clone();
        let gate = self.gate.borrow().clone();
        let agents = self.agents.borrow().clone();
        status::build(&desired, &state, &health, &gate, &agents, &details, &reload)
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
    /// Whether the reconciler is alive (see `lvsdr::status::liveness`).
    pub fn alive(&self) -> Result<(), String> {
        let resync = self.desired.borrow().director.resync_interval;
        let state = self.state.borrow();
        status::liveness(&state, resync, self.started, std::time::SystemTime::now())
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

async fn status_json(State(s): State<Sources>) -> Json<Status> {
    Json(s.status())
}

async fn metrics_text(State(s): State<Sources>) -> impl IntoResponse {
    match metrics::render(&s.status()) {
        Ok(text) => (
            [(
                CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("metrics: {e}\n"),
        )
            .into_response(),
    }
}

async fn index(State(s): State<Sources>) -> Html<String> {
    Html(page::render(&s.status()))
}

/// Serves until cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    sources: Sources,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    axum::serve(listener, router(sources))
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await?;
    Ok(())
}
