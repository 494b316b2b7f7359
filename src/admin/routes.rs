//! The admin listener's routes: `GET` (and `HEAD`) everywhere, `POST /reload` and `POST /purge`; anything
//! else is 405.
//!
//! `/` and its CSS, JS and icon are the dashboard's ([`super::dashboard`]).

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;

use super::State;

pub type AdminBody = Full<Bytes>;

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<AdminBody> {
    respond(status, "text/plain; charset=utf-8", body.into())
}

/// A response with `content_type`.
pub fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<AdminBody> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<AdminBody> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    respond(status, "application/json", Bytes::from(body))
}

/// Answers one admin request.
pub async fn handle<B>(req: Request<B>, state: &std::sync::Arc<State>) -> Response<AdminBody> {
    if req.uri().path() == "/reload" {
        return reload(req.method(), state).await;
    }
    if req.uri().path() == "/purge" {
        return super::purge::handle(req.method(), req.uri(), req.headers(), state).await;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match req.uri().path() {
        "/metrics" => match super::exposition::render(state) {
            Ok(body) => respond(
                StatusCode::OK,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                Bytes::from(body),
            ),
            Err(_) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "metrics encoding failed\n",
            ),
        },
        "/status" => json(StatusCode::OK, &super::status::document(state)),
        "/cache" => super::inspect::handle(req.uri(), req.headers(), state).await,
        // `/` and the files it loads (the dashboard).
        path => super::dashboard::asset(path).unwrap_or_else(|| {
            text(
                StatusCode::NOT_FOUND,
                "not found; try /, /metrics, /status or /cache?url=\n",
            )
        }),
    }
}

/// `POST /reload`: the same as SIGHUP; 200 with what changed, or 422 with `file:line: key:
/// reason` while the old config keeps serving. Only POST: a link or a prefetch must not
/// reload anything.
async fn reload(method: &Method, state: &State) -> Response<AdminBody> {
    if method != Method::POST {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "use POST /reload\n");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return response;
    }
    match state.reload().await {
        Ok(report) => text(StatusCode::OK, format!("{report}\n")),
        Err(reason) => text(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("reload refused, the running config stays: {reason}\n"),
        ),
    }
}
