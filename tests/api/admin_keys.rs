//! `/1/keys*`: adding (openai and azure rules), listing, deleting, permissions.

use crate::admin_users::assert_time;
use crate::helpers::*;
use serde_json::{json, Value};

/// The expected key object, with the times copied from `got`.
fn key_json(got: &Value, id: i64, key: &str, name: &str, api_type: &str, endpoint: &str) -> Value {
    assert_time(&got["createdAt"]);
    assert_time(&got["updatedAt"]);
    json!({
        "id": id,
        "key": key,
        "name": name,
        "ApiType": api_type,
        "endpoint": endpoint,
        "createdAt": got["createdAt"],
        "updatedAt": got["updatedAt"],
        "cooldownSecs": 0,
        "status": "active",
        "statusReason": null,
        "statusUntil": null,
    })
}

async fn list(app: &TestApp, root: &str) -> Value {
    let (status, body) = app.get("/1/keys", root).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn add_openai_keys() {
    let app = spawn_app().await;
    let root = app.init_root().await;
    assert_eq!(list(&app, &root).await, json!([]));

    let (status, k1) = app
        .post(
            "/1/keys",
            &root,
            json!({"key": "sk-abc123", "name": "main", "api_type": "openai"}),
        )
        .await;
    assert_eq!(status, 200, "{k1}");
    assert_eq!(k1, key_json(&k1, 1, "sk-abc123", "main", "openai", ""));

    // api_type defaults to openai; an empty endpoint is the same as none.
    let (status, k2) = app
        .post(
            "/1/keys",
            &root,
            json!({"key": "sk-def456", "name": "second", "endpoint": ""}),
        )
        .await;
    assert_eq!(status, 200, "{k2}");
    assert_eq!(k2, key_json(&k2, 2, "sk-def456", "second", "openai", ""));

    // An endpoint is normalized: no trailing slash, no /v1.
    let (status, k3) = app
        .post(
            "/1/keys",
            &root,
            json!({"key": "sk-ghi789", "name": "proxy", "api_type": "openai",
                   "endpoint": "http://example.test/v1/"}),
        )
        .await;
    assert_eq!(status, 200, "{k3}");
    assert_eq!(
        k3,
        key_json(
            &k3,
            3,
            "sk-ghi789",
            "proxy",
            "openai",
            "http://example.test"
        )
    );

    let (status, k4) = app
        .post(
            "/1/keys",
            &root,
            json!({"key": "sk-jkl", "name": "gw", "endpoint": "https://gw.example.test:8443/"}),
        )
        .await;
    assert_eq!(status, 200, "{k4}");
    assert_eq!(
        k4,
        key_json(
            &k4,
            4,
            "sk-jkl",
            "gw",
            "openai",
            "https://gw.example.test:8443"
        )
    );

    // Listed in full, in id order, exactly as added.
    assert_eq!(list(&app, &root).await, json!([k1, k2, k3, k4]));
}

#[tokio::test]
async fn add_azure_keys() {
    let app = spawn_app().await;
    let root = app.init_root().await;

    // `azure` is an alias; the resource comes from an `azure.<resource>` name.
    let (status, k1) = app
        .post(
            "/1/keys",
            &root,
            json!({"key": "az-1", "name": "azure.myres", "api_type": "azure", "endpoint": ""}),
        )
        .await;
    assert_eq!(status, 200, "{k1}");
    assert_eq!(
        k1,
        key_json(
            &k1,
            1,
            "az-1",
            "azure.myres",
            "azure_openai",
            "https://myres.openai.azure.com"
        )
    );

    // A bare resource name as the endpoint.
    let (status, k2) = app
        .post(
            "/1/keys",
            &root,
            json!({"key": "az-2", "name": "other", "api_type": "azure_openai",
                   "endpoint": "otherres"}),
        )
        .await;
    assert_eq!(status, 200, "{k2}");
    assert_eq!(
        k2,
        key_json(
            &k2,
            2,
            "az-2",
            "other",
            "azure_openai",
            "https://otherres.openai.azure.com"
        )
    );

    // A full resource URL.
    let (status, k3) = app
        .post(
            "/1/keys",
            &root,
            json!({"key": "az-3", "name": "third", "api_type": "azure_openai",
                   "endpoint": "https://third.openai.azure.com/"}),
        )
        .await;
    assert_eq!(status, 200, "{k3}");
    assert_eq!(
        k3,
        key_json(
            &k3,
            3,
            "az-3",
            "third",
            "azure_openai",
            "https://third.openai.azure.com"
        )
    );

    // The name without endpoint works with no endpoint field at all, too.
    let (status, k4) = app
        .post(
            "/1/keys",
            &root,
            json!({"key": "az-4", "name": "azure.fourth", "api_type": "azure_openai"}),
        )
        .await;
    assert_eq!(status, 200, "{k4}");
    assert_eq!(
        k4,
        key_json(
            &k4,
            4,
            "az-4",
            "azure.fourth",
            "azure_openai",
            "https://fourth.openai.azure.com"
        )
    );

    // A plain name and no endpoint: nowhere to send requests.
    for body in [
        json!({"key": "az-5", "name": "plain", "api_type": "azure"}),
        json!({"key": "az-5", "name": "plain", "api_type": "azure_openai", "endpoint": ""}),
        json!({"key": "az-5", "name": "azure.", "api_type": "azure_openai", "endpoint": ""}),
    ] {
        let (status, got) = app.post("/1/keys", &root, body.clone()).await;
        assert_eq!(status, 400, "{body}: {got}");
        assert_error(&got);
    }

    assert_eq!(list(&app, &root).await, json!([k1, k2, k3, k4]));
}

#[tokio::test]
async fn add_key_validation() {
    let app = spawn_app().await;
    let root = app.init_root().await;
    let (status, first) = app
        .post("/1/keys", &root, json!({"key": "sk-1", "name": "dup"}))
        .await;
    assert_eq!(status, 200, "{first}");

    for body in [
        json!({"key": "sk-2", "name": "k", "api_type": "anthropic"}),
        json!({"key": "sk-2", "name": "k", "api_type": "OpenAI-compatible"}),
        json!({"key": "sk-2", "name": "k", "endpoint": "ftp://x"}),
        json!({"key": "sk-2", "name": "k", "api_type": "openai", "endpoint": "not a url"}),
        json!({"key": "sk-2", "name": "k", "endpoint": "example.test"}),
        json!({"name": "k"}),
        json!({"key": "", "name": "k"}),
        json!({"key": "   ", "name": "k"}),
        json!({"key": "sk-2"}),
        json!({"key": "sk-2", "name": ""}),
        json!({"key": "sk-2", "name": "  "}),
        json!({}),
        json!({"key": 5, "name": "k"}),
        json!({"key": "sk-2", "name": ["k"]}),
        json!([]),
    ] {
        let (status, got) = app.post("/1/keys", &root, body.clone()).await;
        assert_eq!(status, 400, "{body}: {got}");
        assert_error(&got);
    }

    // Malformed JSON.
    let resp = app
        .http
        .post(app.url("/1/keys"))
        .bearer_auth(&root)
        .header("content-type", "application/json")
        .body("{\"key\": \"sk-2\", ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_error(&serde_json::from_str(&resp.text().await.unwrap()).unwrap());

    for body in [
        json!({"key": "sk-other", "name": "dup"}),
        json!({"key": "sk-other", "name": "dup", "api_type": "openai",
               "endpoint": "http://example.test"}),
    ] {
        let (status, got) = app.post("/1/keys", &root, body.clone()).await;
        assert_eq!(status, 409, "{body}: {got}");
        assert_error(&got);
    }

    // Only the first key exists.
    assert_eq!(list(&app, &root).await, json!([first]));
}

#[tokio::test]
async fn keys_are_listed_by_id() {
    let app = spawn_app().await;
    let root = app.init_root().await;
    let mut added = Vec::new();
    for (i, name) in ["zeta", "alpha", "mid"].iter().enumerate() {
        let (status, key) = app
            .post(
                "/1/keys",
                &root,
                json!({"key": format!("sk-{i}"), "name": name}),
            )
            .await;
        assert_eq!(status, 200, "{key}");
        assert_eq!(key["id"], json!(i + 1));
        added.push(key);
    }
    assert_eq!(list(&app, &root).await, Value::Array(added));
}

#[tokio::test]
async fn delete_keys() {
    let app = spawn_app().await;
    let root = app.init_root().await;
    let mut added = Vec::new();
    for name in ["k1", "k2", "k3"] {
        let (status, key) = app
            .post(
                "/1/keys",
                &root,
                json!({"key": format!("sk-{name}"), "name": name}),
            )
            .await;
        assert_eq!(status, 200, "{key}");
        added.push(key);
    }

    let (status, body) = app.call("DELETE", "/1/keys/2", Some(&root), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"message": "ok"}));
    assert_eq!(
        list(&app, &root).await,
        json!([added[0].clone(), added[2].clone()])
    );

    let (status, body) = app.call("DELETE", "/1/keys/2", Some(&root), None).await;
    assert_eq!(status, 404, "{body}");
    assert_error(&body);
    let (status, body) = app.call("DELETE", "/1/keys/999", Some(&root), None).await;
    assert_eq!(status, 404, "{body}");
    assert_error(&body);
    for bad in ["abc", "0", "-2"] {
        let path = format!("/1/keys/{bad}");
        let (status, body) = app.call("DELETE", &path, Some(&root), None).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_error(&body);
    }

    // The deleted key's name is free again; the new key gets a new id.
    let (status, again) = app
        .post("/1/keys", &root, json!({"key": "sk-new", "name": "k2"}))
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, key_json(&again, 4, "sk-new", "k2", "openai", ""));
    assert_eq!(
        list(&app, &root).await,
        json!([added[0].clone(), added[2].clone(), again])
    );
}

#[tokio::test]
async fn deleted_key_is_not_used() {
    let app = spawn_app().await;
    let (root, member) = app.with_team(2).await;
    let (status, _) = app.call("DELETE", "/1/keys/1", Some(&root), None).await;
    assert_eq!(status, 200);
    let chat = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    for _ in 0..3 {
        let (status, body) = app
            .post("/v1/chat/completions", &member, chat.clone())
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let used: Vec<String> = app.mock.received().iter().map(|r| r.key()).collect();
    assert_eq!(used, ["sk-2", "sk-2", "sk-2"]);
}

#[tokio::test]
async fn members_cannot_touch_keys() {
    let app = spawn_app().await;
    let (root, member) = app.with_team(1).await;
    let before = list(&app, &root).await;
    let (status, body) = app.get("/1/keys", &member).await;
    assert_eq!(status, 403, "{body}");
    assert_error(&body);
    let (status, body) = app
        .post("/1/keys", &member, json!({"key": "sk-m", "name": "mine"}))
        .await;
    assert_eq!(status, 403, "{body}");
    assert_error(&body);
    let (status, body) = app.call("DELETE", "/1/keys/1", Some(&member), None).await;
    assert_eq!(status, 403, "{body}");
    assert_error(&body);
    assert_eq!(list(&app, &root).await, before);
    assert_eq!(before.as_array().unwrap().len(), 1);
}
