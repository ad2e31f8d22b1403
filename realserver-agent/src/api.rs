//! The push API: `PUT /v1/vips` (the complete VIP set of the director pushing),
//! `GET /v1/status` (that director's view) and `POST /v1/drain` (the director's long
//! poll for this real server's own drain, carrying its counts). Bad input gets a 4xx
//! with a JSON `{"error": …}` naming the problem and changes nothing; a 422 (some VIPs
//! refused) also carries the status, since the rest of the set was applied.

use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use std::time::Duration;

use lvsdr_agent_api::{DrainPoll, ErrorBody, PushVips, MAX_POLL_WAIT_MS};
use tokio::sync::{mpsc, oneshot, watch};

use crate::applier::{Refusal, Request};
use crate::drain::DrainView;

/// The largest push body accepted (a few thousand VIPs).
pub const BODY_LIMIT: usize = 64 * 1024;

/// The connection a request came in on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The agent's address the director connected to: the real IP by default.
    pub local: IpAddr,
    /// The director's name (from its certificate): its VIP set is kept under it.
    pub director: String,
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": msg.into() }))).into_response()
}

/// What the handlers reach: the applier, and the drain it publishes.
#[derive(Clone)]
pub struct Api {
    /// Requests to the applier.
    pub tx: mpsc::Sender<Request>,
    /// The drain.
    pub drain: watch::Receiver<DrainView>,
}

pub fn router(api: Api) -> Router {
    Router::new()
        .route("/v1/vips", put(put_vips))
        .route("/v1/status", get(status))
        .route("/v1/drain", post(poll_drain))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(api)
}

/// A director's drain poll: its counts go to the applier; the answer waits while the
/// director already knows the drain state (see [`DrainPoll`]).
async fn poll_drain(
    State(api): State<Api>,
    Extension(conn): Extension<ConnInfo>,
    body: Bytes,
) -> Response {
    let poll: DrainPoll = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid drain poll: {e}")),
    };
    let report = Request::Report {
        director: conn.director,
        servers: poll.servers,
    };
    if api.tx.send(report).await.is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent is shutting down",
        );
    }
    let mut drain = api.drain;
    if let Some(known) = poll.known {
        let wait = Duration::from_millis(poll.wait_ms.min(MAX_POLL_WAIT_MS));
        // Over at the first change of version (or when the agent stops: the sender
        // gone), else at the end of the wait: either way the current state answers.
        let _ = tokio::time::timeout(wait, drain.wait_for(|v| v.version != known)).await;
    }
    let answer = drain.borrow().answer();
    Json(answer).into_response()
}

async fn put_vips(
    State(Api { tx, .. }): State<Api>,
    Extension(conn): Extension<ConnInfo>,
    body: Bytes,
) -> Response {
    let push: PushVips = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid push body: {e}")),
    };
    let (reply, rx) = oneshot::channel();
    if tx
        .send(Request::Push {
            director: conn.director,
            push,
            local: conn.local,
            reply,
        })
        .await
        .is_err()
    {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent is shutting down",
        );
    }
    match rx.await {
        Ok(Ok(status)) => Json(status).into_response(),
        Ok(Err(Refusal::Conflict(m))) => error(StatusCode::CONFLICT, m),
        Ok(Err(Refusal::Invalid(m, status))) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(ErrorBody {
                error: m,
                status: Some(*status),
            }),
        )
            .into_response(),
        Ok(Err(Refusal::Failed(m))) => error(StatusCode::INTERNAL_SERVER_ERROR, m),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent is shutting down",
        ),
    }
}

async fn status(
    State(Api { tx, .. }): State<Api>,
    Extension(conn): Extension<ConnInfo>,
) -> Response {
    let (reply, rx) = oneshot::channel();
    let director = conn.director;
    if tx.send(Request::Status { director, reply }).await.is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent is shutting down",
        );
    }
    match rx.await {
        Ok(s) => Json(s).into_response(),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent is shutting down",
        ),
    }
}
