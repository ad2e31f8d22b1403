//! The push API: `PUT /v1/vips` (the complete VIP set of the director pushing) and
//! `GET /v1/status` (that director's view). Bad input gets a 4xx with a JSON
//! `{"error": …}` naming the problem and changes nothing; a 422 (some VIPs refused)
//! also carries the status, since the rest of the set was applied.

use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Extension, Json, Router};
use lvsdr_agent_api::{ErrorBody, PushVips};
use tokio::sync::{mpsc, oneshot};

use crate::applier::{Refusal, Request};

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

pub fn router(tx: mpsc::Sender<Request>) -> Router {
    Router::new()
        .route("/v1/vips", put(put_vips))
        .route("/v1/status", get(status))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(tx)
}

async fn put_vips(
    State(tx): State<mpsc::Sender<Request>>,
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
    State(tx): State<mpsc::Sender<Request>>,
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
