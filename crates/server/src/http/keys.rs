//! The key routes, `/v1/kv/{key}`: get, put, delete and compare-and-swap of one key, served on
//! hyper directly rather than through axum's router.
//!
//! Every put and every get of a benchmark, and of most clients, comes here, so this is the
//! hottest code a leader runs besides the kernel's TCP. Through axum, routing (the path matched
//! and its parameter decoded into a map), the boxed route futures and the extractors (the whole
//! header map cloned for every request, to keep it for forwarding) cost about a sixth of a
//! leader's CPU per put at 256 clients, as much as its driver (consensus core, log and store)
//! (perf, frame pointers). Here one `match` on the method replaces the router, the request's
//! parts are moved rather than cloned, and a put's answer is written without building a JSON
//! tree. Measured with `crates/skiff/benches/cpu_per_op.sh` (five rounds alternating the two
//! builds, puts at 256 clients, 4 s each, 2026-12-05): the leader's CPU per put went from
//! 25.3, 24.6, 22.6, 27.4, 28.6 µs to 22.3, 20.6, 19.7, 23.4, 23.2 µs (12 to 19 % less), and
//! puts/s rose by 4 to 16 % in the same rounds; linearizable gets at 256 clients 20.6, 18.4 →
//! 17.5, 17.0 µs.
//!
//! The answers are those of the rest of the API: errors are JSON `{code, message}`, including
//! the ones axum used to write in plain text (a key that does not percent-decode to UTF-8, a
//! method the routes do not serve), and `HEAD` is a `GET` whose body hyper leaves out.

use std::borrow::Cow;

use axum::body::{Body, Bytes};
use axum::extract::Query;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde_json::json;
use skiff_kv::{Op, Outcome};

use super::{
    Api, ApiError, BODY_LIMIT, Original, REVISION, ReadParams, check_key, check_value,
    check_written_key,
};
use crate::runtime::Written;

/// The path prefix of the key routes; the rest of the path is the key, percent-encoded.
pub(super) const PREFIX: &str = "/v1/kv/";

/// The methods the key routes serve, for the `allow` header of a `405`.
const ALLOWED: &str = "GET, HEAD, PUT, DELETE, POST";

/// Serves a request whose path starts with [`PREFIX`].
pub(super) async fn serve(api: Api, request: Request<Incoming>) -> Response {
    let (parts, body) = request.into_parts();
    let key = match decode_key(parts.uri.path()) {
        Ok(key) => key,
        Err(error) => return error.into_response(),
    };
    match parts.method {
        Method::GET | Method::HEAD => get(&api, key, parts).await,
        Method::PUT => put(&api, key, parts, body).await,
        Method::DELETE => delete(&api, key, parts).await,
        Method::POST => cas(&api, key, parts, body).await,
        _ => method_not_allowed(format!(
            "{} is not served here; {PREFIX}{{key}} serves {ALLOWED}",
            parts.method
        )),
    }
}

/// A `405 method_not_allowed`, with the methods the key routes serve.
fn method_not_allowed(message: String) -> Response {
    let error = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", message);
    let mut response = error.into_response();
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(ALLOWED));
    response
}

/// The key named by a path under [`PREFIX`]: the rest of the path, percent-decoded. Not
/// checked against the limits here: each route checks the key it needs (a write also refuses
/// the reserved range).
fn decode_key(path: &str) -> Result<String, ApiError> {
    let encoded = path.strip_prefix(PREFIX).unwrap_or_default();
    percent_decode_str(encoded)
        .decode_utf8()
        .map(Cow::into_owned)
        .map_err(|_| ApiError::bad_request("the key in the path is not UTF-8 once percent-decoded"))
}

/// The whole body of a write, at most [`BODY_LIMIT`] bytes read.
async fn read_body(body: Incoming) -> Result<Bytes, ApiError> {
    match Limited::new(body, BODY_LIMIT).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(ApiError::too_large_body()),
        Err(error) => Err(ApiError::bad_request(format!("unreadable body: {error}"))),
    }
}

/// The body of a write to `key`: the key checked first (a refused key reads no body), then the
/// body read and held to a value's limit.
async fn written_body(key: &str, body: Incoming) -> Result<Bytes, ApiError> {
    check_written_key(key)?;
    read_body(body).await.and_then(check_value)
}

/// `PUT /v1/kv/{key}`: sets the key to the body.
async fn put(api: &Api, key: String, parts: Parts, body: Incoming) -> Response {
    let body = match written_body(&key, body).await {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    let op = Op::Put { key: Bytes::from(key.clone().into_bytes()), value: body.clone() };
    api.write(original(parts, body), &key, op).await
}

/// `DELETE /v1/kv/{key}`.
async fn delete(api: &Api, key: String, parts: Parts) -> Response {
    if let Err(error) = check_written_key(&key) {
        return error.into_response();
    }
    let op = Op::Delete { key: Bytes::from(key.clone().into_bytes()) };
    api.write(original(parts, Bytes::new()), &key, op).await
}

/// The body of a compare-and-swap.
#[derive(Debug, Deserialize)]
struct CasBody {
    /// The value the key must have (`null`: the key must be absent).
    expected: Option<String>,
    /// The value to set (`null`: delete the key).
    value: Option<String>,
}

/// `POST /v1/kv/{key}/cas`: compare-and-swap. (A key may itself contain `/`, so the `/cas`
/// suffix is taken off the decoded path.)
async fn cas(api: &Api, path: String, parts: Parts, body: Incoming) -> Response {
    let Some(key) = path.strip_suffix("/cas") else {
        let message = "POST is only for compare-and-swap: POST /v1/kv/{key}/cas";
        return method_not_allowed(message.to_owned());
    };
    let prepared = written_body(key, body).await.and_then(|body| {
        let cas: CasBody = serde_json::from_slice(&body).map_err(|error| {
            ApiError::bad_request(format!(
                "the body must be {{\"expected\": string or null, \"value\": string or null}}: {error}"
            ))
        })?;
        Ok((body, cas))
    });
    let (body, cas) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => return error.into_response(),
    };
    let op = Op::Cas {
        key: Bytes::from(key.to_owned().into_bytes()),
        expected: cas.expected.map(|value| Bytes::from(value.into_bytes())),
        value: cas.value.map(|value| Bytes::from(value.into_bytes())),
    };
    api.write(original(parts, body), key, op).await
}

/// `GET /v1/kv/{key}`: the raw value, linearizable unless `consistency=lease` or `stale`.
async fn get(api: &Api, key: String, parts: Parts) -> Response {
    let result: Result<Result<Response, Option<String>>, ApiError> = async {
        let Query(params) = Query::<ReadParams>::try_from_uri(&parts.uri)
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
        check_key(&key)?;
        if let Err(leader) = api.read_barrier(params.consistency()?).await? {
            return Ok(Err(leader));
        }
        let value = api.handle.read_store(|store| store.get(key.as_bytes()).cloned());
        let value = value.ok_or_else(|| ApiError::not_found(&key))?;
        let mut response = Response::new(Body::from(value.data));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        headers.insert(REVISION, HeaderValue::from(value.revision));
        Ok(Ok(response))
    }
    .await;
    match result {
        Ok(Ok(response)) => response,
        Ok(Err(leader)) => api.forward_to_leader(original(parts, Bytes::new()), leader).await,
        Err(error) => error.into_response(),
    }
}

/// The request as received, for forwarding: its parts moved, not copied.
fn original(parts: Parts, body: Bytes) -> Original {
    Original { method: parts.method, uri: parts.uri, headers: parts.headers, body }
}

/// Renders the outcome of an applied write.
pub(super) fn render_written(key: &str, written: Written) -> Response {
    let revision = written.index.0;
    match written.outcome {
        // The answer to every put: written out rather than built as a JSON value.
        Outcome::Put | Outcome::CasSucceeded => {
            let mut response = Response::new(Body::from(format!("{{\"revision\":{revision}}}")));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Outcome::Deleted { existed: true } => {
            axum::Json(json!({ "revision": revision, "deleted": true })).into_response()
        }
        Outcome::Deleted { existed: false } => ApiError::not_found(key).into_response(),
        Outcome::CasFailed { current } => {
            let current = current.map(|value| String::from_utf8_lossy(&value).into_owned());
            let body = json!({
                "code": "cas_mismatch",
                "message": format!("the value of {key} is not the expected one"),
                "current": current,
            });
            (StatusCode::CONFLICT, axum::Json(body)).into_response()
        }
        Outcome::StaleSequence { last } => ApiError::new(
            StatusCode::CONFLICT,
            "stale_sequence",
            format!("this client's last applied sequence is {last}; the request is older"),
        )
        .into_response(),
        Outcome::Invalid { reason } => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the state machine refused a validated command: {reason}"),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_percent_decoded_from_the_rest_of_the_path() {
        assert_eq!(decode_key("/v1/kv/plain").expect("a key"), "plain");
        assert_eq!(decode_key("/v1/kv/a/b%20c").expect("a key"), "a/b c");
        assert_eq!(decode_key("/v1/kv/%2Fslash%25").expect("a key"), "/slash%");
        assert_eq!(decode_key("/v1/kv/%E2%9C%93").expect("a key"), "\u{2713}");
        // A stray `%` is kept as it is, as axum's router did.
        assert_eq!(decode_key("/v1/kv/100%").expect("a key"), "100%");
        assert_eq!(decode_key("/v1/kv/").expect("the empty key, refused later"), "");
        let error = decode_key("/v1/kv/%FF").expect_err("not UTF-8");
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
    }
}
