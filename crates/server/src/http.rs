//! The HTTP side of the one listening port: the WebSocket upgrade (`GET /ws`), the Kinopio
//! API (`POST /operations`, `GET /space/{id}`) and the operational endpoints `GET /healthz`,
//! `GET /readyz`, `GET /metrics`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::shared::Shared;
use crate::{connection, kinopio_http};

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/ws", get(upgrade))
        .route("/operations", post(kinopio_http::post_operations))
        .route("/space/{id}", get(kinopio_http::get_space))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(shared)
}

async fn upgrade(State(shared): State<Arc<Shared>>, upgrade: WebSocketUpgrade) -> Response {
    let limit = shared.config.max_message_bytes;
    upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        // Small buffers keep idle connections cheap, and tungstenite zero-fills up to this much
        // before every read (1.6% of the server's CPU at 4 KiB). A submit is a few hundred
        // bytes; larger messages take several reads.
        .read_buffer_size(2 * 1024)
        .write_buffer_size(0)
        .on_upgrade(move |socket| {
            let tracker = shared.connections.clone();
            tracker.track_future(connection::serve(shared, socket))
        })
}

/// Liveness: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: not shutting down, the store answers and its schema is what this build expects.
async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.stop_reading.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reason": "shutting down"})),
        )
            .into_response();
    }
    let status = match shared.store.schema_status().await {
        Ok(status) => status,
        Err(error) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"ready": false, "reason": format!("store unavailable: {error}")})),
            )
                .into_response();
        }
    };
    if !status.pending.is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "ready": false,
                "reason": "schema is behind: run `spacesync migrate`",
                "pending": status.pending,
            })),
        )
            .into_response();
    }
    (
        StatusCode::OK,
        Json(json!({"ready": true, "store": shared.store.describe(), "schema": status.applied})),
    )
        .into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        shared.metrics.render(),
    )
        .into_response()
}
