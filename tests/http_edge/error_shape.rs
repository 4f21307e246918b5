//! One error shape for every error the HTTP layer answers: every route, and what it refuses.

mod routes;

use super::*;
use routes::ROUTES;

/// How a route takes its input, for the cases that apply to it.
#[derive(Clone, Copy, PartialEq)]
enum Input {
    /// No JSON body.
    None,
    /// A JSON body that refuses unknown fields.
    Json,
    /// An optional JSON body (refusing unknown fields when present).
    OptionalJson,
    /// A runner-protocol JSON body: unknown fields are tolerated on purpose (runners and
    /// coordinators of neighbouring versions talk to each other), the rest is checked.
    ProtocolJson,
}

#[derive(Clone, Copy, PartialEq)]
enum Auth {
    Admin,
    Runner,
    Open,
}

/// One route: its method, its path with a valid parameter (`{id}` is replaced), a method it
/// does not serve, whether its path parameter is a number, and its input.
struct RouteCase {
    method: &'static str,
    path: &'static str,
    wrong_method: &'static str,
    numeric_id: bool,
    input: Input,
    auth: Auth,
}

const fn case(
    method: &'static str,
    path: &'static str,
    wrong_method: &'static str,
    numeric_id: bool,
    input: Input,
    auth: Auth,
) -> RouteCase {
    RouteCase {
        method,
        path,
        wrong_method,
        numeric_id,
        input,
        auth,
    }
}

/// Sends one request and checks that the answer is `{"error": {"code", "message"}}` with the
/// expected status and code; returns the response headers.
#[allow(clippy::too_many_arguments)]
async fn expect_error(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Option<Vec<u8>>,
    status: u16,
    code: &str,
) -> reqwest::header::HeaderMap {
    let what = format!("{method} {path} (content type {content_type:?})");
    let mut req = http().request(
        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
        format!("{base}{path}"),
    );
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req.send().await.expect("request");
    let got = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(got, status, "{what}: answered {got} {text}");
    assert!(
        headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json")),
        "{what}: not JSON: {headers:?} {text:?}"
    );
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text:?}"));
    let obj = v.as_object().unwrap();
    assert_eq!(obj.len(), 1, "{what}: {v}");
    let err = v["error"]
        .as_object()
        .unwrap_or_else(|| panic!("{what}: {v}"));
    assert_eq!(err.len(), 2, "{what}: {v}");
    assert_eq!(err["code"], code, "{what}: {v}");
    let message = err["message"].as_str().unwrap();
    assert!(
        !message.is_empty() && !message.chars().any(char::is_control),
        "{what}: message {message:?}"
    );
    headers
}

/// Every route, against the real server: a method it does not serve (405 with `Allow`), a
/// path parameter that is not a number, malformed JSON, an unknown field, a wrong content
/// type, a body over the limit, an unknown route and bad query strings each answer the one
/// JSON error shape with a stable code. Before the fix, axum answered these in plain text and
/// the 405 with an empty body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_answer_has_the_json_shape() {
    let dir = TempDir::new("edge-errors").expect("temp dir");
    let db = Db::fresh(dir.path()).await;
    let coordinator = Coordinator::start(&dir.path().join("server"), &db, 10);
    let api = coordinator.api();
    let base = coordinator.base.clone();
    let origin = Origin::new("edge-errors", &[(".moat.yml", "version: 1\n")]);
    let (repo_id, _, _) = api.add_repo("edge-errors", &origin.url()).await;
    let registration = api.registration_token().await;
    let (status, registered) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/runners/register",
            Some(serde_json::json!({ "token": registration, "name": "r1", "slots": 1 })),
        )
        .await;
    assert_eq!(status, 200, "{registered}");
    let runner_token = registered["token"].as_str().unwrap().to_string();
    let admin = api.token.clone();

    let json = Some("application/json");
    for r in ROUTES {
        let token = match r.auth {
            Auth::Admin => Some(admin.as_str()),
            Auth::Runner => Some(runner_token.as_str()),
            Auth::Open => None,
        };
        let path = r.path.replace("{id}", &repo_id.to_string());

        let headers = expect_error(
            &base,
            r.wrong_method,
            &path,
            token,
            None,
            None,
            405,
            "method_not_allowed",
        )
        .await;
        let allow = headers
            .get("allow")
            .map(|v| v.to_str().unwrap().to_string());
        assert!(
            allow.as_deref().is_some_and(|a| a.contains(r.method)),
            "{} {path}: Allow {allow:?}",
            r.wrong_method
        );

        if r.numeric_id {
            let bad = r.path.replace("{id}", "not-a-number");
            let body = (r.input != Input::None).then(|| b"{}".to_vec());
            let ct = body.as_ref().and(json);
            expect_error(&base, r.method, &bad, token, ct, body, 400, "bad_request").await;
        }

        if r.input == Input::None {
            continue;
        }
        expect_error(
            &base,
            r.method,
            &path,
            token,
            json,
            Some(b"{,}".to_vec()),
            400,
            "bad_request",
        )
        .await;
        expect_error(
            &base,
            r.method,
            &path,
            token,
            Some("text/plain"),
            Some(b"{}".to_vec()),
            415,
            "unsupported_media_type",
        )
        .await;
        // A body of the wrong type (a string) is refused by every JSON route.
        expect_error(
            &base,
            r.method,
            &path,
            token,
            json,
            Some(b"\"text\"".to_vec()),
            422,
            "invalid_body",
        )
        .await;
        if r.input != Input::ProtocolJson {
            expect_error(
                &base,
                r.method,
                &path,
                token,
                json,
                Some(br#"{"no_such_field": 1}"#.to_vec()),
                422,
                "invalid_body",
            )
            .await;
        }
    }

    // A JSON body over the API's limit (4 MiB).
    let big = format!("{{\"name\": \"{}\"}}", "a".repeat(5 << 20)).into_bytes();
    expect_error(
        &base,
        "POST",
        "/api/v1/repos",
        Some(&admin),
        json,
        Some(big),
        413,
        "payload_too_large",
    )
    .await;
    // Unknown routes, with and without a token.
    expect_error(
        &base,
        "GET",
        "/api/v1/nothing",
        Some(&admin),
        None,
        None,
        404,
        "not_found",
    )
    .await;
    expect_error(&base, "GET", "/nothing", None, None, None, 404, "not_found").await;
    // Query strings: a value of the wrong type, an unknown parameter.
    for q in [
        "/api/v1/runs?limit=many",
        "/api/v1/runs?no_such=1",
        "/api/v1/audit?limit=-",
    ] {
        expect_error(
            &base,
            "GET",
            q,
            Some(&admin),
            None,
            None,
            400,
            "bad_request",
        )
        .await;
    }
    expect_error(
        &base,
        "GET",
        &format!("/api/v1/runs/{repo_id}/logs?after=x"),
        Some(&admin),
        None,
        None,
        400,
        "bad_request",
    )
    .await;
}
