//! The console's sign-in, session cookie and CSRF protection, through the router: pages and
//! headers, sign-in and its refusals, a cookie-authenticated change without the CSRF token
//! refused with nothing changed, organization isolation for sessions, sign-out, and a revoked
//! token ending its sessions. (The console in a real browser: the keyward crate's
//! `console::the_console_walks_the_guide_in_headless_chromium`.)

use axum::body::Body;
use axum::http::{header, Method, StatusCode};
use keyward_api::console::{CONTENT_SECURITY_POLICY, CSRF_HEADER, ROUTES};
use serde_json::json;

use crate::{assert_error, Answer, Api};

async fn send(
    api: &Api,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Body>,
) -> (Answer, axum::http::HeaderMap) {
    api.send(method, path, headers, body).await
}

/// Signs in with `token`: (the `Cookie` header to send back, the CSRF token).
async fn sign_in(api: &Api, token: &str) -> (String, String) {
    let (answer, headers) = send(
        api,
        Method::POST,
        "/console/session",
        &[("content-type", "application/json")],
        json!({ "token": token }).to_string(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.json);
    let cookie = headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    let pair = cookie.split(';').next().unwrap().to_owned();
    (pair, answer.json["csrf_token"].as_str().unwrap().to_owned())
}

async fn cluster_count(api: &Api, token: &str) -> usize {
    let answer = api
        .call(Method::GET, "/v1/clusters", Some(token), Body::empty())
        .await;
    answer.json["clusters"].as_array().unwrap().len()
}

#[tokio::test]
async fn the_pages_are_served_with_a_strict_policy_and_every_answer_carries_the_headers() {
    let api = Api::start().await;
    let (answer, headers) = send(&api, Method::GET, "/", &[], Body::empty()).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/console/");
    for (method, path) in ROUTES
        .iter()
        .filter(|(m, p)| *m == "GET" && p.contains('.'))
    {
        let (answer, headers) = send(&api, Method::GET, path, &[], Body::empty()).await;
        assert_eq!(answer.status, StatusCode::OK, "{method} {path}");
        assert!(!answer.bytes.is_empty(), "{path}");
        let expected = match path.rsplit('.').next().unwrap() {
            "js" => "text/javascript; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "svg" => "image/svg+xml",
            other => panic!("an asset of kind {other}"),
        };
        assert_eq!(headers[header::CONTENT_TYPE], expected, "{path}");
    }
    let (page, headers) = send(&api, Method::GET, "/console/", &[], Body::empty()).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = String::from_utf8(page.bytes.to_vec()).unwrap();
    assert!(html.contains("<script src=\"/console/console.js\" defer></script>"));
    assert!(
        !html.contains("style=") && !html.contains("<style") && !html.contains("onclick"),
        "no inline style or script the policy would refuse"
    );
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    // The same headers on the API's answers (an error among them).
    let (_, api_headers) = send(&api, Method::GET, "/v1/clusters", &[], Body::empty()).await;
    for headers in [headers, api_headers] {
        assert_eq!(headers["content-security-policy"], CONTENT_SECURITY_POLICY);
        assert!(CONTENT_SECURITY_POLICY.contains("default-src 'self'"));
        assert!(CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["cache-control"], "no-store");
    }
}

#[tokio::test]
async fn sign_in_takes_an_organization_token_as_json_and_answers_a_strict_http_only_cookie() {
    let api = Api::start().await;
    let (_, token) = api.organization("acme").await;
    let json_type = [("content-type", "application/json")];
    // Refusals: not JSON (a cross-site form), no token, a wrong token, the admin token.
    let (answer, headers) = send(
        &api,
        Method::POST,
        "/console/session",
        &[("content-type", "application/x-www-form-urlencoded")],
        format!("token={token}"),
    )
    .await;
    assert_error(&answer, 400, "invalid_request");
    assert!(!headers.contains_key(header::SET_COOKIE));
    for (body, status, code) in [
        (json!({"token": ""}), 400, "invalid_request"),
        (json!({"nope": token}), 400, "invalid_request"),
        (
            json!({"token": format!("kw_{}", "A".repeat(43))}),
            401,
            "unauthenticated",
        ),
        (json!({"token": api.admin_token}), 401, "unauthenticated"),
    ] {
        let (answer, headers) = send(
            &api,
            Method::POST,
            "/console/session",
            &json_type,
            body.to_string(),
        )
        .await;
        assert_error(&answer, status, code);
        assert!(!headers.contains_key(header::SET_COOKIE), "{body}");
    }
    // The organization's token: a session.
    let (answer, headers) = send(
        &api,
        Method::POST,
        "/console/session",
        &json_type,
        json!({ "token": token }).to_string(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.json);
    assert_eq!(answer.json["organization"]["name"], "acme");
    let csrf = answer.json["csrf_token"].as_str().unwrap();
    assert_eq!(csrf.len(), 43, "32 random bytes");
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.starts_with("keyward_session="), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(
            cookie.split("; ").any(|a| a == attribute),
            "{attribute}: {cookie}"
        );
    }
    let id = cookie.split(';').next().unwrap();
    assert_eq!(id.len(), "keyward_session=".len() + 43, "32 random bytes");
    assert!(!cookie.contains(&token) && !cookie.contains(csrf));
    // The page learns its CSRF token again with the cookie alone.
    let (again, _) = send(
        &api,
        Method::GET,
        "/console/session",
        &[("cookie", id)],
        Body::empty(),
    )
    .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json["csrf_token"], csrf);
    let (none, _) = send(&api, Method::GET, "/console/session", &[], Body::empty()).await;
    assert_error(&none, 401, "unauthenticated");
}

#[tokio::test]
async fn a_cookie_authenticated_change_without_the_csrf_token_is_forbidden_and_changes_nothing() {
    let api = Api::start().await;
    let (_, token) = api.organization("acme").await;
    let (cookie, csrf) = sign_in(&api, &token).await;
    let create = json!({"name": "prod", "encryption": "external"}).to_string();
    let json_type = ("content-type", "application/json");

    // Reads take the cookie alone.
    let (list, _) = send(
        &api,
        Method::GET,
        "/v1/clusters",
        &[("cookie", &cookie)],
        Body::empty(),
    )
    .await;
    assert_eq!(list.status, StatusCode::OK);
    // Changes without the token, or with another, are 403 and change nothing.
    for headers in [
        vec![("cookie", cookie.as_str()), json_type],
        vec![
            ("cookie", cookie.as_str()),
            json_type,
            (CSRF_HEADER, "wrong"),
        ],
        vec![("cookie", cookie.as_str()), json_type, (CSRF_HEADER, "")],
        vec![
            ("cookie", cookie.as_str()),
            json_type,
            (CSRF_HEADER, &csrf[..42]),
        ],
    ] {
        let (answer, _) = send(&api, Method::POST, "/v1/clusters", &headers, create.clone()).await;
        assert_error(&answer, 403, "forbidden");
    }
    assert_eq!(cluster_count(&api, &token).await, 0, "nothing created");
    // With the token: created.
    let (created, _) = send(
        &api,
        Method::POST,
        "/v1/clusters",
        &[("cookie", &cookie), json_type, (CSRF_HEADER, &csrf)],
        create.clone(),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    let id = created.json["id"].as_str().unwrap().to_owned();
    // A delete without it: refused, the cluster still there.
    let (answer, _) = send(
        &api,
        Method::DELETE,
        &format!("/v1/clusters/{id}"),
        &[("cookie", &cookie)],
        Body::empty(),
    )
    .await;
    assert_error(&answer, 403, "forbidden");
    assert_eq!(cluster_count(&api, &token).await, 1);
    // A bearer request is as before: the cookie is not looked at, no CSRF token needed.
    let (bearer, _) = send(
        &api,
        Method::POST,
        "/v1/clusters",
        &[
            ("authorization", &format!("Bearer {token}")),
            ("cookie", "keyward_session=unknown"),
            json_type,
        ],
        json!({"name": "staging", "encryption": "internal"}).to_string(),
    )
    .await;
    assert_eq!(bearer.status, StatusCode::CREATED, "{}", bearer.json);
    // An unknown session is unauthenticated; a cookie never grants the admin routes.
    let (answer, _) = send(
        &api,
        Method::GET,
        "/v1/clusters",
        &[(
            "cookie",
            "keyward_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )],
        Body::empty(),
    )
    .await;
    assert_error(&answer, 401, "unauthenticated");
    let (answer, _) = send(
        &api,
        Method::POST,
        "/v1/organizations",
        &[("cookie", &cookie), json_type, (CSRF_HEADER, &csrf)],
        json!({"name": "evil"}).to_string(),
    )
    .await;
    assert_error(&answer, 401, "unauthenticated");
}

#[tokio::test]
async fn a_session_sees_its_organization_only_and_ends_at_sign_out_or_revocation() {
    let api = Api::start().await;
    let (org, token) = api.organization("acme").await;
    let (_, other_token) = api.organization("other").await;
    let theirs = api.cluster(&other_token, "theirs").await;
    let theirs = theirs["id"].as_str().unwrap();
    let (cookie, csrf) = sign_in(&api, &token).await;
    let (answer, _) = send(
        &api,
        Method::GET,
        &format!("/v1/clusters/{theirs}"),
        &[("cookie", &cookie)],
        Body::empty(),
    )
    .await;
    assert_error(&answer, 404, "not_found");

    // Sign-out needs the CSRF token too; then the cookie is dead and cleared.
    let (answer, _) = send(
        &api,
        Method::DELETE,
        "/console/session",
        &[("cookie", &cookie)],
        Body::empty(),
    )
    .await;
    assert_error(&answer, 403, "forbidden");
    let (answer, headers) = send(
        &api,
        Method::DELETE,
        "/console/session",
        &[("cookie", &cookie), (CSRF_HEADER, &csrf)],
        Body::empty(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert!(headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let (answer, _) = send(
        &api,
        Method::GET,
        "/v1/clusters",
        &[("cookie", &cookie)],
        Body::empty(),
    )
    .await;
    assert_error(&answer, 401, "unauthenticated");

    // A token revoked ends the sessions signed in with it.
    let (cookie, _) = sign_in(&api, &token).await;
    let tokens = api
        .call(
            Method::GET,
            &format!("/v1/organizations/{org}/tokens"),
            Some(&api.admin_token.clone()),
            Body::empty(),
        )
        .await;
    let token_id = tokens.json["tokens"][0]["id"].as_str().unwrap().to_owned();
    let revoked = api
        .call(
            Method::DELETE,
            &format!("/v1/organizations/{org}/tokens/{token_id}"),
            Some(&api.admin_token.clone()),
            Body::empty(),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    for path in ["/v1/clusters", "/console/session"] {
        let (answer, _) = send(
            &api,
            Method::GET,
            path,
            &[("cookie", &cookie)],
            Body::empty(),
        )
        .await;
        assert_error(&answer, 401, "unauthenticated");
    }
}
