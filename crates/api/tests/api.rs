#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

//! The API over real HTTP on loopback, against SQLite and PostgreSQL: every test
//! below runs once per backend.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, PASSWORD, TestApp, assert_problem};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warden_telemetry::probe::{get_on, until_closed};

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Backend::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() {
                   if let Some(backend) = super::Backend::postgres() { super::$name(backend).await }
               } )*
        }
    };
}

on_both_backends!(
    registering_returns_the_user_and_refuses_duplicates,
    registration_validates_email_and_password,
    login_returns_a_token_that_authenticates,
    wrong_email_and_wrong_password_look_the_same,
    logout_revokes_the_token,
    expired_tokens_are_refused,
    items_round_trip_any_json,
    items_validate_their_title,
    items_page_newest_first_with_a_cursor,
    another_users_item_is_not_found,
    failed_logins_are_throttled_per_account,
    failed_logins_are_throttled_per_address,
    an_address_failing_on_an_account_locks_no_one_else_out,
    forwarded_addresses_are_believed_only_with_the_proxy_secret,
    json_limits_are_enforced,
    item_data_that_parsers_cannot_read_back_is_refused,
    overload_is_shed_with_retry_after,
    slow_requests_time_out,
    health_readiness_and_unknown_routes,
    metrics_describe_requests_memory_and_build,
    openapi_document_lists_every_route,
    data_survives_a_restart,
);

async fn registering_returns_the_user_and_refuses_duplicates(backend: Backend) {
    let app = TestApp::spawn(&backend).await;
    let r = app.register("Ada@Example.com").await;
    assert_eq!(r.status(), 201);
    let user: Value = r.json().await.unwrap();
    assert_eq!(user["email"], "ada@example.com");
    assert!(user["id"].is_i64());
    assert!(user["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(user.get("password_hash").is_none());

    let detail = assert_problem(app.register("ada@example.COM").await, 409).await;
    assert!(detail.contains("already registered"), "{detail}");
}

async fn registration_validates_email_and_password(backend: Backend) {
    let app = TestApp::spawn(&backend).await;
    for (email, password, needle) in [
        ("not-an-email", PASSWORD, "email"),
        ("a@", PASSWORD, "email"),
        ("ada@example.com", "short", "12 to 128"),
        ("ada@example.com", &"x".repeat(129), "12 to 128"),
    ] {
        let r = app
            .post_json(
                "/v1/users",
                &json!({"email": email, "password": password}),
                None,
            )
            .await;
        let detail = assert_problem(r, 422).await;
        assert!(detail.contains(needle), "{detail}");
    }
    // Exactly 12 and 128 characters (multi-byte ones count as one) are fine.
    for (i, password) in ["ü".repeat(12), "p".repeat(128)].iter().enumerate() {
        let r = app
            .post_json(
                "/v1/users",
                &json!({"email": format!("u{i}@example.com"), "password": password}),
                None,
            )
            .await;
        assert_eq!(r.status(), 201);
    }
    let r = app
        .post_json(
            "/v1/users",
            &json!({"email": "b@example.com", "password": PASSWORD, "admin": true}),
            None,
        )
        .await;
    let detail = assert_problem(r, 422).await;
    assert!(detail.contains("unknown field `admin`"), "{detail}");
    let r = app
        .post_json("/v1/users", &json!({"email": "c@example.com"}), None)
        .await;
    assert!(assert_problem(r, 422).await.contains("password"));
}

async fn login_returns_a_token_that_authenticates(backend: Backend) {
    let app = TestApp::spawn(&backend).await;
    app.register("ada@example.com").await;
    let r = app.login("ADA@example.com", PASSWORD).await;
    assert_eq!(r.status(), 201);
    let session: Value = r.json().await.unwrap();
    let token = session["token"].as_str().unwrap();
    assert_eq!(token.len(), 43, "256 bits in unpadded base64url");
    let expires = session["expires_at"].as_str().unwrap();
    let expires =
        time::OffsetDateTime::parse(expires, &time::format_description::well_known::Rfc3339)
            .unwrap();
    let hours = (expires - time::OffsetDateTime::now_utc()).whole_minutes() as f64 / 60.0;
    assert!(
        (23.9..=24.0).contains(&hours),
        "default expiry 24 h, got {hours} h"
    );

    let me: Value = app.get("/v1/me", Some(token)).await.json().await.unwrap();
    assert_eq!(me["email"], "ada@example.com");

    let r = app.get("/v1/me", None).await;
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_problem(r, 401).await;
    assert_problem(app.get("/v1/me", Some("not-a-real-token")).await, 401).await;
    let r = app
        .client
        .get(app.url("/v1/me"))
        .header("authorization", format!("Basic {token}"))
        .send()
        .await
        .unwrap();
    assert_problem(r, 401).await;
}

async fn wrong_email_and_wrong_password_look_the_same(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |s| s.login_failures_per_account = 100).await;
    app.register("ada@example.com").await;
    let mut wrong_password = Vec::new();
    let mut unknown_email = Vec::new();
    let mut bodies = std::collections::HashSet::new();
    for i in 0..5 {
        let t = Instant::now();
        let r = app.login("ada@example.com", "wrong password!!").await;
        wrong_password.push(t.elapsed());
        bodies.insert(assert_problem(r, 401).await);
        let t = Instant::now();
        let r = app
            .login(&format!("nobody{i}@example.com"), "wrong password!!")
            .await;
        unknown_email.push(t.elapsed());
        bodies.insert(assert_problem(r, 401).await);
    }
    assert_eq!(bodies.len(), 1, "identical answers: {bodies:?}");
    // Unknown emails are verified against a dummy hash, so both cost an argon2
    // verification. Without it, an unknown email answers ~100x faster. The bound is
    // deliberately loose: this checks the work is done, not how fast.
    wrong_password.sort();
    unknown_email.sort();
    let ratio = unknown_email[2].as_secs_f64() / wrong_password[2].as_secs_f64();
    assert!(
        ratio > 0.3,
        "unknown email answered much faster: ratio {ratio:.2}"
    );
}

async fn logout_revokes_the_token(backend: Backend) {
    let app = TestApp::spawn(&backend).await;
    let token = app.user("ada@example.com").await;
    let other: Value = app
        .login("ada@example.com", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let r = app
        .client
        .delete(app.url("/v1/sessions/current"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_problem(app.get("/v1/me", Some(&token)).await, 401).await;
    let r = app
        .client
        .delete(app.url("/v1/sessions/current"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_problem(r, 401).await;
    // Other sessions of the same user are unaffected.
    assert_eq!(
        app.get("/v1/me", other["token"].as_str()).await.status(),
        200
    );
}

async fn expired_tokens_are_refused(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |s| s.token_ttl = Duration::from_millis(1500)).await;
    let token = app.user("ada@example.com").await;
    assert_eq!(app.get("/v1/me", Some(&token)).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let detail = assert_problem(app.get("/v1/me", Some(&token)).await, 401).await;
    assert!(detail.contains("expired"), "{detail}");
}

async fn items_round_trip_any_json(backend: Backend) {
    let app = TestApp::spawn(&backend).await;
    let token = app.user("ada@example.com").await;
    for data in [
        json!(null),
        json!(42),
        json!("text ✓"),
        json!([1, [2, [3]]]),
        json!({"a": {"b": [true, 1.5]}}),
    ] {
        let item = app.create_item(&token, "thing", data.clone()).await;
        assert_eq!(item["data"], data);
        let id = item["id"].as_i64().unwrap();
        let got: Value = app
            .get(&format!("/v1/items/{id}"), Some(&token))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(got, item);
    }
    let item = app.create_item(&token, "before", json!({"v": 1})).await;
    let id = item["id"].as_i64().unwrap();
    let r = app
        .client
        .put(app.url(&format!("/v1/items/{id}")))
        .bearer_auth(&token)
        .json(&json!({"title": "after", "data": {"v": 2}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let updated: Value = r.json().await.unwrap();
    assert_eq!(
        (updated["title"].as_str(), &updated["data"]),
        (Some("after"), &json!({"v": 2}))
    );
    assert_eq!(updated["created_at"], item["created_at"]);

    let r = app
        .client
        .delete(app.url(&format!("/v1/items/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_problem(app.get(&format!("/v1/items/{id}"), Some(&token)).await, 404).await;
    let r = app
        .client
        .delete(app.url(&format!("/v1/items/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_problem(r, 404).await;
    assert_problem(app.get("/v1/items/abc", Some(&token)).await, 400).await;
    assert_problem(app.get("/v1/items/1", None).await, 401).await;
}

async fn items_validate_their_title(backend: Backend) {
    let app = TestApp::spawn(&backend).await;
    let token = app.user("ada@example.com").await;
    for body in [
        json!({"title": "", "data": 1}),
        json!({"title": "   ", "data": 1}),
        json!({"title": "t".repeat(201), "data": 1}),
        json!({"title": "ok"}),
        json!({"title": 5, "data": 1}),
        json!({"title": "ok", "data": 1, "owner": 2}),
    ] {
        assert_problem(app.post_json("/v1/items", &body, Some(&token)).await, 422).await;
    }
    let list: Value = app
        .get("/v1/items", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"], json!([]), "rejected input changed nothing");
}

async fn items_page_newest_first_with_a_cursor(backend: Backend) {
    let app = TestApp::spawn(&backend).await;
    let token = app.user("ada@example.com").await;
    let mut created = Vec::new();
    for i in 0..25 {
        created.push(
            app.create_item(&token, &format!("item {i}"), json!(i))
                .await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    created.reverse();
    let mut seen = Vec::new();
    let mut path = "/v1/items?limit=10".to_owned();
    let mut pages = 0;
    loop {
        let page: Value = app.get(&path, Some(&token)).await.json().await.unwrap();
        pages += 1;
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_i64().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/items?limit=10&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created, "every item once, newest first");
    let default: Value = app
        .get("/v1/items", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(default["items"].as_array().unwrap().len(), 20);
    for bad in [
        "limit=0",
        "limit=101",
        "limit=x",
        "cursor=%%%",
        "cursor=bm90LWFuLWlk",
    ] {
        assert_problem(
            app.get(&format!("/v1/items?{bad}"), Some(&token)).await,
            400,
        )
        .await;
    }
}

async fn another_users_item_is_not_found(backend: Backend) {
    let app = TestApp::spawn(&backend).await;
    let ada = app.user("ada@example.com").await;
    let bob = app.user("bob@example.com").await;
    let item = app
        .create_item(&ada, "ada's", json!({"secret": true}))
        .await;
    let path = format!("/v1/items/{}", item["id"]);
    assert_problem(app.get(&path, Some(&bob)).await, 404).await;
    let r = app
        .client
        .put(app.url(&path))
        .bearer_auth(&bob)
        .json(&json!({"title": "mine", "data": 0}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404).await;
    let r = app
        .client
        .delete(app.url(&path))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_problem(r, 404).await;
    let list: Value = app.get("/v1/items", Some(&bob)).await.json().await.unwrap();
    assert_eq!(list["items"], json!([]));
    let still: Value = app.get(&path, Some(&ada)).await.json().await.unwrap();
    assert_eq!(still, item, "bob's attempts changed nothing");
}

async fn failed_logins_are_throttled_per_account(backend: Backend) {
    let app = TestApp::spawn(&backend).await;
    app.register("ada@example.com").await;
    for _ in 0..5 {
        assert_problem(app.login("ada@example.com", "wrong password!!").await, 401).await;
    }
    let r = app.login("ada@example.com", "wrong password!!").await;
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    assert_problem(r, 429).await;
    // While throttled, even the right password waits from this address: that is
    // what stops guessing.
    assert_problem(app.login("ada@example.com", PASSWORD).await, 429).await;
    // But the account is not locked: from another address its owner logs in.
    let elsewhere = TestApp::client_from([127, 0, 0, 2]);
    assert_eq!(
        app.login_with(&elsewhere, "ada@example.com", PASSWORD)
            .await
            .status(),
        201
    );
    // Other accounts are unaffected.
    app.register("bob@example.com").await;
    assert_eq!(app.login("bob@example.com", PASSWORD).await.status(), 201);
}

async fn failed_logins_are_throttled_per_address(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |s| s.login_failures_per_address = 4).await;
    for i in 0..4 {
        assert_problem(
            app.login(&format!("u{i}@example.com"), "wrong password!!")
                .await,
            401,
        )
        .await;
    }
    let r = app.login("fresh@example.com", "wrong password!!").await;
    assert!(r.headers().contains_key("retry-after"));
    let detail = assert_problem(r, 429).await;
    assert!(detail.contains("address"), "{detail}");
}

/// One address hammering an account gets 429, and nobody else does: the owner of
/// that account and of any other still log in from their own addresses.
async fn an_address_failing_on_an_account_locks_no_one_else_out(backend: Backend) {
    let app = TestApp::spawn(&backend).await;
    app.register("ada@example.com").await;
    app.register("bob@example.com").await;
    let attacker = TestApp::client_from([127, 0, 0, 2]);
    let user = TestApp::client_from([127, 0, 0, 3]);
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let r = app
            .login_with(&attacker, "bob@example.com", "wrong password!!")
            .await;
        statuses.push(r.status().as_u16());
    }
    assert_eq!(&statuses[..5], [401; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    let r = app.login_with(&attacker, "bob@example.com", PASSWORD).await;
    let detail = assert_problem(r, 429).await;
    assert!(
        detail.contains("this account from your address"),
        "{detail}"
    );

    for email in ["ada@example.com", "bob@example.com"] {
        let r = app.login_with(&user, email, PASSWORD).await;
        assert_eq!(r.status(), 201, "{email}: {}", r.text().await.unwrap());
    }
    // The attacker's address is refused for bob only.
    assert_eq!(
        app.login_with(&attacker, "ada@example.com", PASSWORD)
            .await
            .status(),
        201
    );
}

/// `X-Forwarded-For` names the client only on requests that carry the proxy's
/// secret; a client talking to the API directly is throttled by its own address
/// whatever it claims.
async fn forwarded_addresses_are_believed_only_with_the_proxy_secret(backend: Backend) {
    const SECRET: &str = "a-secret-of-at-least-32-characters-0123456789";
    let app = TestApp::spawn_with(&backend, |s| {
        s.login_failures_per_address = 3;
        s.proxy_secret = Some(warden_api::forwarded::ProxySecret::parse(SECRET).unwrap());
    })
    .await;
    let login = |email: String, forwarded_for: &str, secret: Option<&str>| {
        let mut r = app
            .client
            .post(app.url("/v1/sessions"))
            .header("x-forwarded-for", forwarded_for)
            .json(&json!({"email": email, "password": "wrong password!!"}));
        if let Some(secret) = secret {
            r = r.header("x-warden-proxy-secret", secret);
        }
        r.send()
    };
    // Forged: a new address each time, with no secret or a wrong one. All count
    // against the connecting address, 127.0.0.1.
    let forged = [
        None,
        Some("a-wrong-secret-of-at-least-32-characters-0123"),
        None,
    ];
    for (i, secret) in forged.into_iter().enumerate() {
        let r = login(
            format!("u{i}@example.com"),
            &format!("198.51.100.{i}"),
            secret,
        )
        .await
        .unwrap();
        assert_problem(r, 401).await;
    }
    let r = login("fresh@example.com".into(), "198.51.100.9", None)
        .await
        .unwrap();
    let detail = assert_problem(r, 429).await;
    assert!(detail.contains("from your address"), "{detail}");

    // With the secret, the forwarded address is the client: 203.0.113.7 has its own
    // count, unaffected by 127.0.0.1's, and its failures do not touch 203.0.113.8.
    for i in 0..3 {
        let r = login(format!("v{i}@example.com"), "203.0.113.7", Some(SECRET))
            .await
            .unwrap();
        assert_problem(r, 401).await;
    }
    let r = login("fresh@example.com".into(), "203.0.113.7", Some(SECRET))
        .await
        .unwrap();
    assert_problem(r, 429).await;
    let r = login("fresh@example.com".into(), "203.0.113.8", Some(SECRET))
        .await
        .unwrap();
    assert_problem(r, 401).await;
}

async fn json_limits_are_enforced(backend: Backend) {
    let app = TestApp::spawn(&backend).await;
    let token = app.user("ada@example.com").await;
    let post = |body: Vec<u8>, content_type: Option<&str>| {
        let mut r = app
            .client
            .post(app.url("/v1/items"))
            .bearer_auth(&token)
            .body(body);
        if let Some(ct) = content_type {
            r = r.header("content-type", ct);
        }
        r.send()
    };
    let json_ct = Some("application/json");

    // Size: 256 KiB by default.
    let big = format!(r#"{{"title":"big","data":"{}"}}"#, "x".repeat(256 * 1024));
    let detail = assert_problem(post(big.into_bytes(), json_ct).await.unwrap(), 413).await;
    assert!(detail.contains("262144"), "{detail}");
    let fits = format!(r#"{{"title":"fits","data":"{}"}}"#, "x".repeat(255 * 1024));
    assert_eq!(
        post(fits.into_bytes(), json_ct).await.unwrap().status(),
        201
    );

    // Depth: 64 levels by default, counting the body's own object.
    let nested = |levels: usize| {
        format!(
            r#"{{"title":"deep","data":{}1{}}}"#,
            "[".repeat(levels),
            "]".repeat(levels)
        )
    };
    assert_eq!(
        post(nested(63).into_bytes(), json_ct)
            .await
            .unwrap()
            .status(),
        201
    );
    let detail = assert_problem(post(nested(64).into_bytes(), json_ct).await.unwrap(), 400).await;
    assert!(detail.contains("64 levels"), "{detail}");

    // Content type.
    let ok_body = br#"{"title":"t","data":1}"#.to_vec();
    assert_problem(
        post(ok_body.clone(), Some("text/plain")).await.unwrap(),
        415,
    )
    .await;
    assert_problem(post(ok_body.clone(), None).await.unwrap(), 415).await;
    assert_eq!(
        post(ok_body, Some("application/json; charset=utf-8"))
            .await
            .unwrap()
            .status(),
        201
    );

    // Malformed and non-UTF-8 bodies name the position.
    let detail = assert_problem(
        post(b"{\"title\": \"t\",\n \"data\": }".to_vec(), json_ct)
            .await
            .unwrap(),
        400,
    )
    .await;
    assert!(detail.contains("line 2 column"), "{detail}");
    let detail = assert_problem(
        post(b"{\"title\": \"\xc3\x28\", \"data\": 1}".to_vec(), json_ct)
            .await
            .unwrap(),
        400,
    )
    .await;
    assert!(detail.contains("UTF-8 at byte 11"), "{detail}");
    assert_problem(post(Vec::new(), json_ct).await.unwrap(), 400).await;

    let list: Value = app
        .get("/v1/items?limit=100", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        3,
        "only the accepted bodies were stored"
    );
}

/// Item data is kept verbatim and echoed to every client, so what some parsers
/// cannot read back (RFC 8259 section 8.2, I-JSON) is refused up front, naming the
/// problem and where; the same values written interoperably are stored.
async fn item_data_that_parsers_cannot_read_back_is_refused(backend: Backend) {
    let app = TestApp::spawn(&backend).await;
    let token = app.user("ada@example.com").await;
    let send = |method: reqwest::Method, path: String, data: String| {
        app.client
            .request(method, app.url(&path))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(format!(r#"{{"title":"t","data":{data}}}"#))
            .send()
    };
    let long = "9".repeat(100_000);
    for (data, says) in [
        (
            r#""\ud800""#.to_owned(),
            "`\\uD800` in a JSON string at byte 21",
        ),
        (
            r#"{"\uDC00": 1}"#.to_owned(),
            "`\\uDC00` in a JSON string at byte 22",
        ),
        (r#"["\ud83d x"]"#.to_owned(), "lone UTF-16 surrogate"),
        ("1e400".to_owned(), "`1e400` at byte 20 is beyond the range"),
        (format!("[-{long}]"), "100001 characters at byte 21"),
    ] {
        let r = send(reqwest::Method::POST, "/v1/items".into(), data.clone())
            .await
            .unwrap();
        let detail = assert_problem(r, 400).await;
        assert!(detail.contains(says), "{data:.40}: {detail}");
    }
    let stored = app.create_item(&token, "ok", json!(1)).await;
    let path = format!("/v1/items/{}", stored["id"]);
    let r = send(reqwest::Method::PUT, path.clone(), r#""\udfff""#.into())
        .await
        .unwrap();
    assert_problem(r, 400).await;
    for data in [
        r#""\ud83d\ude00 \u00e9""#,
        "1.7976931348623157e308",
        "-12345678901234567890",
        "1e-400",
    ] {
        let r = send(reqwest::Method::POST, "/v1/items".into(), data.into())
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{data}");
        let echoed = r.text().await.unwrap();
        assert!(echoed.contains(&format!(r#""data":{data}"#)), "{echoed}");
    }
    let list: Value = app
        .get("/v1/items?limit=100", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 5);
    let unchanged: Value = app.get(&path, Some(&token)).await.json().await.unwrap();
    assert_eq!(unchanged["data"], 1, "the refused PUT changed nothing");
}

/// Opens a raw connection and sends a POST whose body is not finished, so the
/// request stays in flight inside the handler until `finish` is called.
pub struct HalfSentRequest {
    stream: tokio::net::TcpStream,
    rest: Vec<u8>,
}

impl HalfSentRequest {
    pub async fn start(addr: std::net::SocketAddr, token: &str) -> Self {
        let body = br#"{"title":"slow","data":{"x":1}}"#;
        let (head, rest) = body.split_at(10);
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "POST /v1/items HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        stream.write_all(head).await.unwrap();
        stream.flush().await.unwrap();
        Self {
            stream,
            rest: rest.to_vec(),
        }
    }

    /// Sends the rest of the body and returns the raw response.
    pub async fn finish(mut self) -> String {
        self.stream.write_all(&self.rest).await.unwrap();
        self.response().await
    }

    pub async fn response(mut self) -> String {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(20), self.stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

async fn overload_is_shed_with_retry_after(backend: Backend) {
    let app = TestApp::spawn_with(&backend, |s| s.max_concurrent_requests = 1).await;
    let token = app.user("ada@example.com").await;
    let in_flight = HalfSentRequest::start(app.addr, &token).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = app.get("/v1/me", Some(&token)).await;
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(assert_problem(r, 503).await.contains("concurrency limit"));
    // Operational endpoints are not shed: monitoring still works under overload.
    assert_eq!(app.get("/metrics", None).await.status(), 200);
    assert!(in_flight.finish().await.starts_with("HTTP/1.1 201"));
    assert_eq!(app.get("/v1/me", Some(&token)).await.status(), 200);
}

async fn slow_requests_time_out(backend: Backend) {
    let app =
        TestApp::spawn_with(&backend, |s| s.request_timeout = Duration::from_millis(500)).await;
    let token = app.user("ada@example.com").await;
    let stalled = HalfSentRequest::start(app.addr, &token).await;
    let response = stalled.response().await;
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(response.contains("timeout"), "{response}");
}

async fn health_readiness_and_unknown_routes(backend: Backend) {
    let app = TestApp::spawn(&backend).await;
    let r: Value = app.get("/healthz", None).await.json().await.unwrap();
    assert_eq!(r["status"], "ok");
    let r: Value = app.get("/readyz", None).await.json().await.unwrap();
    assert_eq!(r["status"], "ready");
    assert_problem(app.get("/v2/nothing/here", None).await, 404).await;
    // A route that exists, with a method it does not take: a problem document that
    // says so, and the Allow header RFC 9110 requires.
    let r = app.client.patch(app.url("/v1/items")).send().await.unwrap();
    let allow = r.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let detail = assert_problem(r, 405).await;
    assert!(detail.contains("PATCH"), "{detail}");
}

/// A TCP relay to PostgreSQL that can fall silent: from then on it passes nothing
/// either way and accepts new connections without answering, as a database behind
/// a dead network link does.
struct Relay {
    addr: std::net::SocketAddr,
    silent: tokio::sync::watch::Sender<bool>,
}

impl Relay {
    async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (silent, silenced) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            loop {
                let (client, _) = listener.accept().await.unwrap();
                if *silenced.borrow() {
                    tokio::spawn(async move {
                        let _held = client;
                        std::future::pending::<()>().await;
                    });
                    continue;
                }
                let server = tokio::net::TcpStream::connect(&upstream).await.unwrap();
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(Self::pass(client_read, server_write, silenced.clone()));
                tokio::spawn(Self::pass(server_read, client_write, silenced.clone()));
            }
        });
        Self { addr, silent }
    }

    /// Copies until silenced; then holds both ends open and passes nothing more.
    async fn pass(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        silenced: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if *silenced.borrow() {
                return std::future::pending().await;
            }
            if to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }

    fn fall_silent(&self) {
        self.silent.send_replace(true);
    }
}

/// `host:port` of a PostgreSQL URL, and the URL with another `host:port`.
fn swap_authority(url: &str, with: &str) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (user, host) = authority
        .rsplit_once('@')
        .map_or(("", authority), |(u, h)| (u, h));
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    let user = if user.is_empty() {
        String::new()
    } else {
        format!("{user}@")
    };
    (host, format!("{scheme}://{user}{with}/{path}"))
}

/// A database that stops answering makes `/readyz` say so within a second, rather
/// than after the pool's acquire timeout (5 s). PostgreSQL only: a SQLite file
/// cannot stop answering this way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_answers_within_a_second_when_the_database_stops_answering() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let Backend::Postgres(server) = &backend else {
        unreachable!()
    };
    let relay = Relay::start(swap_authority(server, "unused").0).await;
    let through = relay.addr.to_string();
    let app = TestApp::spawn_with(&backend, |s| {
        s.database_url = swap_authority(&s.database_url, &through).1;
    })
    .await;
    let r: Value = app.get("/readyz", None).await.json().await.unwrap();
    assert_eq!(r["status"], "ready");

    relay.fall_silent();
    for _ in 0..2 {
        let started = Instant::now();
        let r = app.get("/readyz", None).await;
        let took = started.elapsed();
        let detail = assert_problem(r, 503).await;
        assert!(
            took < Duration::from_secs(1),
            "/readyz took {took:?} to say: {detail}"
        );
        assert!(
            detail.contains("the database is unreachable: no answer within 500 ms"),
            "{detail}"
        );
    }
    // The API itself still answers.
    let r: Value = app.get("/healthz", None).await.json().await.unwrap();
    assert_eq!(r["status"], "ok");
}

async fn metrics_describe_requests_memory_and_build(backend: Backend) {
    let app = TestApp::spawn(&backend).await;
    let token = app.user("ada@example.com").await;
    let item = app.create_item(&token, "x", json!(1)).await;
    app.get(&format!("/v1/items/{}", item["id"]), Some(&token))
        .await;
    app.get("/v1/items/999999", Some(&token)).await;
    let r = app.get("/metrics", None).await;
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.text().await.unwrap();
    for needle in [
        r#"http_server_request_duration_seconds_count{http_request_method="GET",http_response_status_code="200",http_route="/v1/items/{id}"} 1"#,
        r#"http_server_request_duration_seconds_count{http_request_method="GET",http_response_status_code="404",http_route="/v1/items/{id}"} 1"#,
        r#"http_server_request_duration_seconds_count{http_request_method="POST",http_response_status_code="201",http_route="/v1/users"} 1"#,
        "http_server_active_requests 1",
        "process_resident_memory_bytes ",
        "process_virtual_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_open_fds ",
        "process_max_fds ",
        "process_start_time_seconds ",
        "process_threads ",
        "warden_db_pool_connections ",
        "warden_db_pool_idle_connections ",
        "warden_db_pool_max_connections 16",
        r#"warden_build_info{git_commit="test",lockfile_sha256="test",version="0.0.0-test"} 1"#,
        "warden_chaos_leak_bytes_per_request 0",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    assert!(!text.contains("999999"), "raw paths never become labels");
    promtool_check(&text);
}

/// Runs `promtool check metrics` on an exposition. promtool comes from Debian's
/// `prometheus` package (the test command installs it); without it the check is
/// skipped with a note, except under CI=true, where it fails.
fn promtool_check(text: &str) {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but promtool is not installed (Debian package `prometheus`)")
        }
        Err(_) => {
            eprintln!("skipping promtool check: install Debian's `prometheus` package");
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn openapi_document_lists_every_route(backend: Backend) {
    let app = TestApp::spawn(&backend).await;
    let doc: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for (path, methods) in [
        ("/v1/users", &["post"][..]),
        ("/v1/sessions", &["post"]),
        ("/v1/sessions/current", &["delete"]),
        ("/v1/me", &["get"]),
        ("/v1/items", &["get", "post"]),
        ("/v1/items/{id}", &["get", "put", "delete"]),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
        ("/metrics", &["get"]),
    ] {
        for m in methods {
            let op = &doc["paths"][path][m];
            assert!(op.is_object(), "{m} {path} missing");
            if path.starts_with("/v1/") {
                assert!(
                    op["responses"]["500"].is_object(),
                    "{m} {path} lacks error answers"
                );
            }
        }
    }
    for schema in [
        "Credentials",
        "User",
        "Session",
        "Item",
        "ItemInput",
        "ItemPage",
        "Problem",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} missing"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // The rules a client must know: what item data is refused, how logins are throttled.
    let data = doc["components"]["schemas"]["ItemInput"]["properties"]["data"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(
        data.contains("surrogate") && data.contains("double"),
        "{data}"
    );
    let bad = doc["paths"]["/v1/items"]["post"]["responses"]["400"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(
        bad.contains("surrogate") && bad.contains("RFC 7493"),
        "{bad}"
    );
    let throttled = doc["paths"]["/v1/sessions"]["post"]["responses"]["429"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(throttled.contains("never locked"), "{throttled}");
}

async fn data_survives_a_restart(backend: Backend) {
    let app = TestApp::spawn(&backend).await;
    let token = app.user("ada@example.com").await;
    let item = app.create_item(&token, "keep me", json!({"n": 1})).await;
    let app = app.restart().await;
    let got: Value = app
        .get(&format!("/v1/items/{}", item["id"]), Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got, item, "sessions and items persist across restarts");
}

/// 200 connections that send half a header or nothing must not stay open: the API
/// closes a connection that does not send its request head within the header-read
/// timeout, and a keep-alive connection idle for longer than the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed() {
    let timeouts = warden_telemetry::serve::Timeouts {
        header_read: Duration::from_millis(300),
        idle: Duration::from_secs(1),
    };
    let app = TestApp::spawn_with(&Backend::Sqlite, |s| s.connection_timeouts = timeouts).await;
    let early = Duration::from_millis(10);

    // 100 send nothing, 100 half a request head.
    let started = Instant::now();
    let mut stalled = Vec::new();
    for n in 0..200 {
        let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        if n % 2 == 1 {
            stream
                .write_all(b"POST /v1/sessions HTTP/1.1\r\nHost: test\r\nContent-Ty")
                .await
                .unwrap();
        }
        stalled.push(stream);
    }
    for stream in &mut stalled {
        until_closed(stream, "stalled").await;
    }
    let after = started.elapsed();
    assert!(
        after >= timeouts.header_read - early,
        "closed after {after:?}"
    );
    // One alone, to see it is not closed before its deadline.
    let mut silent = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let after = until_closed(&mut silent, "silent").await;
    assert!(
        after >= timeouts.header_read - early,
        "closed after {after:?}"
    );

    let mut kept = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    assert!(
        get_on(&mut kept, "/healthz", "keep-alive")
            .await
            .starts_with("HTTP/1.1 200")
    );
    tokio::time::sleep(timeouts.header_read * 2).await;
    assert!(
        get_on(&mut kept, "/healthz", "keep-alive")
            .await
            .starts_with("HTTP/1.1 200"),
        "a keep-alive connection outlives the header timeout"
    );
    let after = until_closed(&mut kept, "keep-alive").await;
    assert!(after >= timeouts.idle - early, "closed after {after:?}");

    // Requests sent in time are served as ever.
    assert_eq!(app.get("/healthz", None).await.status(), 200);
}
