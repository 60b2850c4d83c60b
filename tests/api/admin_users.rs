//! `/1/users*` and `/1/me`: init, auth, permissions, add/delete/reset, body validation.

use crate::helpers::*;
use serde_json::{json, Value};

/// Asserts `t` is `YYYY-MM-DDTHH:MM:SS.ffffffZ` (fixed-width RFC 3339 UTC, microseconds).
pub fn assert_time(t: &Value) {
    let s = t.as_str().unwrap_or_else(|| panic!("not a string: {t}"));
    let b = s.as_bytes();
    let ok = b.len() == 27
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            26 => *c == b'Z',
            _ => c.is_ascii_digit(),
        });
    assert!(ok, "not a 2023-05-28T10:47:19.711027Z-style time: {s}");
    assert!(
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok(),
        "not RFC 3339: {s}"
    );
}

/// The expected user object, with the dynamic fields copied from `got`.
fn user_json(got: &Value, id: i64, name: &str, deleted: bool) -> Value {
    assert!(got["token"].is_string(), "token missing: {got}");
    assert_time(&got["createdAt"]);
    assert_time(&got["updatedAt"]);
    json!({
        "id": id,
        "name": name,
        "token": got["token"],
        "IsDelete": deleted,
        "createdAt": got["createdAt"],
        "updatedAt": got["updatedAt"],
        "limits": {"monthlyBudget": null, "dailyBudget": null, "rpm": null, "maxConcurrent": null},
    })
}

fn unauthorized() -> Value {
    json!({"error": "Unauthorized"})
}

/// Sends raw bytes as a JSON body; returns (status, JSON body or the text as a string).
async fn raw(app: &TestApp, method: &str, path: &str, token: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = app
        .http
        .request(method.parse().unwrap(), app.url(path))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn init_creates_root_once() {
    let app = spawn_app().await;
    let (status, body) = app.call("POST", "/1/users/init", None, None).await;
    assert_eq!(status, 200, "{body}");
    assert_uuid(body["token"].as_str().unwrap());
    assert_eq!(body, user_json(&body, 1, "root", false));
    let root = body["token"].as_str().unwrap().to_string();

    let (status, again) = app.call("POST", "/1/users/init", None, None).await;
    assert_eq!(status, 403);
    assert_eq!(
        again,
        json!({"error": "super user already exists, use cli to reset password"})
    );
    // Even with root's token, a second init is refused and root keeps its token.
    let (status, again) = app.call("POST", "/1/users/init", Some(&root), None).await;
    assert_eq!(status, 403);
    assert_eq!(
        again,
        json!({"error": "super user already exists, use cli to reset password"})
    );

    let (status, me) = app.get("/1/me", &root).await;
    assert_eq!(status, 200);
    assert_eq!(user_of_me(&me), body);
    let (status, users) = app.get("/1/users", &root).await;
    assert_eq!(status, 200);
    assert_eq!(users, json!([body]));
}

#[tokio::test]
async fn before_init_every_route_is_unauthorized() {
    let app = spawn_app().await;
    let bogus = "6ac4bd1a-0000-4000-8000-000000000000";
    let routes: &[(&str, &str, Option<Value>)] = &[
        ("GET", "/1/me", None),
        ("GET", "/1/me/usages", None),
        ("GET", "/1/users", None),
        ("POST", "/1/users", Some(json!({"name": "u1"}))),
        ("DELETE", "/1/users/2", None),
        ("POST", "/1/users/1/reset", None),
        ("GET", "/1/keys", None),
        ("POST", "/1/keys", Some(json!({"key": "sk-1", "name": "k"}))),
        ("DELETE", "/1/keys/1", None),
        ("GET", "/1/usages", None),
        ("GET", "/1/nope", None),
        ("GET", "/1", None),
    ];
    for (method, path, body) in routes {
        for token in [None, Some(bogus)] {
            let (status, got) = app.call(method, path, token, body.clone()).await;
            assert_eq!(status, 401, "{method} {path} token={token:?}: {got}");
            assert_eq!(got, unauthorized(), "{method} {path}");
        }
    }
    // Nothing was created by those calls: init still works and gives id 1.
    let (status, body) = app.call("POST", "/1/users/init", None, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], 1);
}

#[tokio::test]
async fn unknown_or_missing_token_is_unauthorized() {
    let app = spawn_app().await;
    let root = app.init_root().await;
    let bogus = uuid::Uuid::new_v4().to_string();
    for path in ["/1/me", "/1/users", "/1/keys", "/1/usages", "/1/nope"] {
        let (status, body) = app.call("GET", path, None, None).await;
        assert_eq!(status, 401, "{path}");
        assert_eq!(body, unauthorized(), "{path}");
        let (status, body) = app.get(path, &bogus).await;
        assert_eq!(status, 401, "{path}");
        assert_eq!(body, unauthorized(), "{path}");
        // A prefix of a real token is not a token.
        let (status, body) = app.get(path, &root[..root.len() - 1]).await;
        assert_eq!(status, 401, "{path}");
        assert_eq!(body, unauthorized(), "{path}");
    }
    // Root's token under a non-bearer scheme does not authenticate.
    let resp = app
        .http
        .get(app.url("/1/me"))
        .header("authorization", format!("Basic {root}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(
        serde_json::from_str::<Value>(&resp.text().await.unwrap()).unwrap(),
        unauthorized()
    );
    // With a valid token, an unknown /1 path is a 404 in the /1 error shape.
    let (status, body) = app.get("/1/nope", &root).await;
    assert_eq!(status, 404, "{body}");
    assert_error(&body);
}

#[tokio::test]
async fn add_user_returns_the_user() {
    let app = spawn_app().await;
    let root = app.init_root().await;
    let (status, u1) = app.post("/1/users", &root, json!({"name": "u1"})).await;
    assert_eq!(status, 200, "{u1}");
    assert_uuid(u1["token"].as_str().unwrap());
    assert_eq!(u1, user_json(&u1, 2, "u1", false));
    assert_ne!(u1["token"], json!(root));

    let (status, u2) = app
        .post("/1/users", &root, json!({"name": "  carol \t"}))
        .await;
    assert_eq!(status, 200, "{u2}");
    assert_eq!(u2, user_json(&u2, 3, "carol", false));
    assert_ne!(u2["token"], u1["token"]);

    // The member sees exactly themselves on /1/me.
    let (status, me) = app.get("/1/me", u1["token"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(user_of_me(&me), u1);

    let (status, root_user) = app.get("/1/me", &root).await;
    let root_user = user_of_me(&root_user);
    assert_eq!(status, 200);
    let (status, list) = app.get("/1/users", &root).await;
    assert_eq!(status, 200);
    assert_eq!(list, json!([root_user, u1, u2]));
}

#[tokio::test]
async fn user_names_are_validated() {
    let app = spawn_app().await;
    let root = app.init_root().await;
    app.add_user(&root, "alice").await;

    for dup in ["alice", "  alice  ", "root"] {
        let (status, body) = app.post("/1/users", &root, json!({ "name": dup })).await;
        assert_eq!(status, 409, "{dup:?}: {body}");
        assert_error(&body);
    }
    for bad in [
        json!({"name": ""}),
        json!({"name": "   "}),
        json!({"name": "\t\n"}),
        json!({ "name": "x".repeat(65) }),
        json!({ "name": format!(" {} ", "é".repeat(65)) }),
    ] {
        let (status, body) = app.post("/1/users", &root, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_error(&body);
    }
    for bad_type in [
        json!({}),
        json!({"name": 5}),
        json!({"name": null}),
        json!({"name": ["a"]}),
        json!({"name": {"first": "a"}}),
        json!([]),
        json!("alice2"),
        json!(42),
    ] {
        let (status, body) = app.post("/1/users", &root, bad_type.clone()).await;
        assert_eq!(status, 400, "{bad_type}: {body}");
        assert_error(&body);
    }
    for malformed in [
        &b"{\"name\":"[..],
        b"{name: \"x\"}",
        b"",
        b"not json",
        b"{\"name\":\"a\"}}",
    ] {
        let (status, body) = raw(&app, "POST", "/1/users", &root, malformed.to_vec()).await;
        assert_eq!(
            status,
            400,
            "{:?}: {body}",
            String::from_utf8_lossy(malformed)
        );
        assert_error(&body);
    }

    // 64 characters is the limit (counted in characters, not bytes), after trimming.
    let long = "x".repeat(64);
    let (status, body) = app
        .post("/1/users", &root, json!({ "name": format!("  {long}  ") }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, user_json(&body, 3, &long, false));
    let wide = "é".repeat(64);
    let (status, body) = app.post("/1/users", &root, json!({ "name": wide })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, user_json(&body, 4, &wide, false));

    // None of the rejected requests created a user.
    let (_, list) = app.get("/1/users", &root).await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["root", "alice", long.as_str(), wide.as_str()]);
}

#[tokio::test]
async fn oversized_body_is_413() {
    let app = spawn_app().await;
    let root = app.init_root().await;
    let mut body = b"{\"name\":\"".to_vec();
    body.extend(std::iter::repeat_n(b'a', 1024 * 1024));
    body.extend(b"\"}");
    let (status, got) = raw(&app, "POST", "/1/users", &root, body).await;
    assert_eq!(status, 413, "{got}");
    assert_error(&got);
    // The same without a content-length (chunked): the limit applies while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = std::iter::once(b"{\"name\":\"".to_vec())
        .chain((0..17).map(|_| vec![b'a'; 64 * 1024]))
        .chain(std::iter::once(b"\"}".to_vec()))
        .map(Ok)
        .collect();
    let resp = app
        .http
        .post(app.url("/1/users"))
        .bearer_auth(&root)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    assert_error(&serde_json::from_str(&resp.text().await.unwrap()).unwrap());
    // A body just under the limit is read (and rejected for its name length, not its size).
    let mut body = b"{\"name\":\"".to_vec();
    body.extend(std::iter::repeat_n(b'a', 1024 * 1024 - 20));
    body.extend(b"\"}");
    let (status, got) = raw(&app, "POST", "/1/users", &root, body).await;
    assert_eq!(status, 400, "{got}");
    // The server is still fine afterwards.
    let (status, _) = app.get("/1/me", &root).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn members_are_forbidden_on_root_routes() {
    let app = spawn_app().await;
    let (root, member) = app.with_team(1).await;
    let (_, other) = app.add_user(&root, "bob").await;
    let routes: &[(&str, &str, Option<Value>)] = &[
        ("GET", "/1/users", None),
        ("GET", "/1/users?all=true", None),
        ("POST", "/1/users", Some(json!({"name": "mallory"}))),
        ("DELETE", "/1/users/3", None),
        ("DELETE", "/1/users/2", None),
        ("DELETE", "/1/users/1", None),
        ("POST", "/1/users/1/reset", None),
        ("POST", "/1/users/2/reset", None),
        ("POST", "/1/users/2/reset?token=member-chosen-token", None),
        ("GET", "/1/keys", None),
        (
            "POST",
            "/1/keys",
            Some(json!({"key": "sk-x", "name": "mine", "api_type": "openai"})),
        ),
        ("DELETE", "/1/keys/1", None),
        ("GET", "/1/usages", None),
        ("GET", "/1/usages?from=2024-01-01&to=2024-02-01", None),
    ];
    for (method, path, body) in routes {
        let (status, got) = app.call(method, path, Some(&member), body.clone()).await;
        assert_eq!(status, 403, "{method} {path}: {got}");
        assert_error(&got);
    }
    // Nothing changed: same users with the same tokens, the key is still there.
    let (status, users) = app.get("/1/users", &root).await;
    assert_eq!(status, 200);
    let tokens: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["token"].as_str().unwrap())
        .collect();
    assert_eq!(tokens, [root.as_str(), member.as_str(), other.as_str()]);
    let (status, keys) = app.get("/1/keys", &root).await;
    assert_eq!(status, 200);
    assert_eq!(keys.as_array().unwrap().len(), 1);

    // The member may read their own user and usage.
    let (status, me) = app.get("/1/me", &member).await;
    assert_eq!(status, 200);
    assert_eq!(user_of_me(&me), user_json(&me, 2, "alice", false));
    assert_eq!(me["token"], json!(member));
    let (status, _) = app.get("/1/me/usages", &member).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn deleted_user_loses_access_at_once() {
    let app = spawn_app().await;
    let root = app.init_root().await;
    app.add_key(&root, "key1", "sk-1").await;
    let (status, alice) = app.post("/1/users", &root, json!({"name": "alice"})).await;
    assert_eq!(status, 200);
    let token = alice["token"].as_str().unwrap().to_string();
    let chat = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    let (status, body) = app.post("/v1/chat/completions", &token, chat.clone()).await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = app.call("DELETE", "/1/users/2", Some(&root), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"message": "ok"}));

    let (status, body) = app.get("/1/me", &token).await;
    assert_eq!(status, 401);
    assert_eq!(body, unauthorized());
    let (status, body) = app.post("/v1/chat/completions", &token, chat.clone()).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(
        body,
        json!({"error": {
            "message": body["error"]["message"],
            "type": "invalid_request_error",
            "param": null,
            "code": "invalid_api_key",
        }})
    );
    // Azure-style clients sending the token as `api-key` are refused the same way.
    let resp = app
        .http
        .post(app.url("/v1/chat/completions"))
        .header("api-key", &token)
        .header("content-type", "application/json")
        .body(chat.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let got: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(got["error"]["code"], "invalid_api_key", "{got}");
    assert_eq!(got["error"]["type"], "invalid_request_error", "{got}");
    // Only the request made before the delete reached the upstream.
    assert_eq!(app.mock.received().len(), 1);

    // Deleting again: no live user with that id.
    let (status, body) = app.call("DELETE", "/1/users/2", Some(&root), None).await;
    assert_eq!(status, 404, "{body}");
    assert_error(&body);

    // The list omits the deleted user; ?all=true shows it flagged.
    let (_, root_user) = app.get("/1/me", &root).await;
    let root_user = user_of_me(&root_user);
    let (status, live) = app.get("/1/users", &root).await;
    assert_eq!(status, 200);
    assert_eq!(live, json!([root_user]));
    let (status, all) = app.get("/1/users?all=true", &root).await;
    assert_eq!(status, 200);
    let gone = &all[1];
    assert_eq!(*gone, user_json(gone, 2, "alice", true));
    assert_eq!(gone["token"], json!(token));
    assert_eq!(gone["createdAt"], alice["createdAt"]);
    assert_eq!(all, json!([root_user, gone]));

    // The name is free again; the new user gets a new id and a new token.
    let (status, again) = app.post("/1/users", &root, json!({"name": "alice"})).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, user_json(&again, 3, "alice", false));
    assert_ne!(again["token"], json!(token));
    let (status, live) = app.get("/1/users", &root).await;
    assert_eq!(status, 200);
    assert_eq!(live, json!([root_user, again]));
    let (status, all) = app.get("/1/users?all=true", &root).await;
    assert_eq!(status, 200);
    assert_eq!(all, json!([root_user, gone, again]));
    // The old token still does not work (it is not the new alice's).
    let (status, _) = app.get("/1/me", &token).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn delete_rejects_bad_ids() {
    let app = spawn_app().await;
    let root = app.init_root().await;
    app.add_user(&root, "alice").await;

    let (status, body) = app.call("DELETE", "/1/users/1", Some(&root), None).await;
    assert_eq!(status, 400, "{body}");
    assert_error(&body);
    let (status, body) = app.call("DELETE", "/1/users/999", Some(&root), None).await;
    assert_eq!(status, 404, "{body}");
    assert_error(&body);
    for bad in ["abc", "-1", "0", "2.0", "1e3"] {
        let path = format!("/1/users/{bad}");
        let (status, body) = app.call("DELETE", &path, Some(&root), None).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_error(&body);
    }
    // Root still works, alice is still there.
    let (status, users) = app.get("/1/users", &root).await;
    assert_eq!(status, 200);
    assert_eq!(users.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn reset_gives_a_new_token() {
    let app = spawn_app().await;
    let root = app.init_root().await;
    let (status, alice) = app.post("/1/users", &root, json!({"name": "alice"})).await;
    assert_eq!(status, 200);
    let old = alice["token"].as_str().unwrap().to_string();

    let (status, reset) = app
        .call("POST", "/1/users/2/reset", Some(&root), None)
        .await;
    assert_eq!(status, 200, "{reset}");
    let new = reset["token"].as_str().unwrap().to_string();
    assert_uuid(&new);
    assert_ne!(new, old);
    assert_eq!(reset, user_json(&reset, 2, "alice", false));
    assert_eq!(reset["createdAt"], alice["createdAt"]);

    let (status, body) = app.get("/1/me", &old).await;
    assert_eq!(status, 401);
    assert_eq!(body, unauthorized());
    let (status, me) = app.get("/1/me", &new).await;
    assert_eq!(status, 200);
    assert_eq!(user_of_me(&me), reset);

    // A chosen token.
    let (status, custom) = app
        .call(
            "POST",
            "/1/users/2/reset?token=custom-token-123",
            Some(&root),
            None,
        )
        .await;
    assert_eq!(status, 200, "{custom}");
    assert_eq!(custom, user_json(&custom, 2, "alice", false));
    assert_eq!(custom["token"], "custom-token-123");
    let (status, _) = app.get("/1/me", &new).await;
    assert_eq!(status, 401);
    let (status, me) = app.get("/1/me", "custom-token-123").await;
    assert_eq!(status, 200);
    assert_eq!(user_of_me(&me), custom);

    // Root can reset itself; the old root token dies at once.
    let (status, root_reset) = app
        .call("POST", "/1/users/1/reset", Some(&root), None)
        .await;
    assert_eq!(status, 200, "{root_reset}");
    assert_eq!(root_reset, user_json(&root_reset, 1, "root", false));
    let root2 = root_reset["token"].as_str().unwrap().to_string();
    assert_uuid(&root2);
    let (status, _) = app.get("/1/users", &root).await;
    assert_eq!(status, 401);
    let (status, _) = app.get("/1/users", &root2).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn reset_rejects_bad_tokens_and_ids() {
    let app = spawn_app().await;
    let root = app.init_root().await;
    let (_, alice) = app.add_user(&root, "alice").await;
    let (_, bob) = app.add_user(&root, "bob").await;

    let (status, body) = app
        .call(
            "POST",
            "/1/users/2/reset?token=custom-token-123",
            Some(&root),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Tokens in use (by another user or by root) → 409.
    for (id, token) in [
        (3, "custom-token-123".to_string()),
        (3, root.clone()),
        (2, bob.clone()),
    ] {
        let path = format!("/1/users/{id}/reset?token={token}");
        let (status, body) = app.call("POST", &path, Some(&root), None).await;
        assert_eq!(status, 409, "{path}: {body}");
        assert_error(&body);
    }
    // Bad chosen tokens → 400.
    let too_long = "t".repeat(129);
    for bad in ["short", "1234567", "has%20space-123", too_long.as_str(), ""] {
        let path = format!("/1/users/3/reset?token={bad}");
        let (status, body) = app.call("POST", &path, Some(&root), None).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_error(&body);
    }
    // Bounds: 8 and 128 visible characters are fine.
    for ok in ["12345678".to_string(), "T".repeat(128)] {
        let path = format!("/1/users/3/reset?token={ok}");
        let (status, body) = app.call("POST", &path, Some(&root), None).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(body["token"], json!(ok));
    }
    // Unknown ids.
    for path in [
        "/1/users/999/reset",
        "/1/users/999/reset?token=custom-token-999",
    ] {
        let (status, body) = app.call("POST", path, Some(&root), None).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_error(&body);
    }
    let (status, body) = app
        .call("POST", "/1/users/abc/reset", Some(&root), None)
        .await;
    assert_eq!(status, 400, "{body}");

    // Nobody's token changed by the failed calls: alice has the custom one, bob his own.
    let (status, _) = app.get("/1/me", &alice).await;
    assert_eq!(status, 401);
    let (status, me) = app.get("/1/me", "custom-token-123").await;
    assert_eq!(status, 200);
    assert_eq!(me["id"], 2);
    let (status, me) = app.get("/1/me", &root).await;
    assert_eq!(status, 200);
    assert_eq!(me["id"], 1);
    let (status, _) = app.get("/1/me", &bob).await;
    assert_eq!(
        status, 401,
        "bob's token was reset to T…T by the bounds check"
    );
}
