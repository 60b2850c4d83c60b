//! Azure-style inbound requests: what the official AzureOpenAI SDKs send
//! (`/openai/deployments/{d}/{op}?api-version=…` with `api-key`, or `/openai/v1/...`), served
//! by OpenAI and Azure keys through the `/v1` pipeline and metered as `/v1` traffic.

use serde_json::{json, Value};

use crate::helpers::*;

/// Sends `body` byte for byte to `path` with `api-key: token`, as the Azure SDKs do.
async fn azure_post(app: &TestApp, path: &str, token: &str, body: &str) -> reqwest::Response {
    app.http
        .post(app.url(path))
        .header("api-key", token)
        .header("content-type", "application/json")
        .header("x-ms-client-request-id", "client-1")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// A chat completion without a `model`, so the usage row's model is the request's.
fn completion_without_model(prompt: u64, completion: u64) -> Value {
    let mut v = chat_completion("unused", "Hi", Some((prompt, completion)));
    v.as_object_mut().unwrap().remove("model");
    v
}

async fn add_azure_key(app: &TestApp, root: &str) {
    let body = json!({"key":"az-secret","name":"az","api_type":"azure","endpoint":app.mock.url()});
    let (status, body) = app.post("/1/keys", root, body).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn deployment_chat_through_an_openai_key_gets_the_model_added() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(1).await;
    app.mock
        .on(|_| Reply::json(200, completion_without_model(10, 45)));
    let body =
        "{ \"messages\": [{\"role\":\"user\",\"content\":\"hi\"}],\n \"temperature\": 0.50 }";
    let resp = azure_post(
        &app,
        "/openai/deployments/gpt-35-turbo/chat/completions?api-version=2024-10-21",
        &member,
        body,
    )
    .await;
    assert_eq!(resp.status(), 200);
    let request_id = resp.headers()["x-catgate-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let answer: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "Hi");

    let got = &app.mock.received()[0];
    assert_eq!(got.path, "/v1/chat/completions");
    assert_eq!(got.query, None, "OpenAI gets no api-version");
    assert_eq!(got.header("authorization").as_deref(), Some("Bearer sk-1"));
    assert_eq!(got.header("api-key"), None);
    assert_eq!(
        std::str::from_utf8(&got.body).unwrap(),
        "{\"model\":\"gpt-3.5-turbo\", \"messages\": [{\"role\":\"user\",\"content\":\"hi\"}],\n \"temperature\": 0.50 }",
        "OpenAI's spelling of the deployment's model, every other byte as sent"
    );

    // The deployment's model, priced as gpt-3.5-turbo ($0.50 / $1.50 per 1M):
    // (10 × 0.5 + 45 × 1.5) / 1M = 72.5 / 1M.
    let row = &app.usage_rows(1).await[0];
    assert_eq!(row.request_id, request_id);
    assert_eq!(row.route, "/v1/chat/completions");
    assert_eq!(row.model, "gpt-35-turbo");
    assert_eq!((row.prompt_tokens, row.completion_tokens), (10, 45));
    assert_eq!(row.cost_text(), "0.0000725");
    assert_eq!((row.status, row.stream), (200, false));
}

#[tokio::test]
async fn a_body_that_names_its_model_goes_unchanged() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(1).await;
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let resp = app
        .http
        .post(app.url("/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21"))
        .bearer_auth(&member)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = &app.mock.received()[0];
    assert_eq!(
        (got.path.as_str(), got.query.as_deref()),
        ("/v1/chat/completions", None)
    );
    assert_eq!(&got.body[..], body.as_bytes());
    // The mock answers 9 + 12 tokens of gpt-4o-mini ($0.15 / $0.60 per 1M):
    // (9 × 0.15 + 12 × 0.6) / 1M = 8.55 / 1M.
    let row = &app.usage_rows(1).await[0];
    assert_eq!(
        (row.route.as_str(), row.model.as_str()),
        ("/v1/chat/completions", "gpt-4o-mini")
    );
    assert_eq!(row.cost_text(), "0.00000855");
}

#[tokio::test]
async fn deployment_chat_through_an_azure_key_keeps_the_body_and_maps_back_the_model() {
    let app = spawn_app_with("[azure_deployments]\n\"gpt-4o\" = \"prod-4o\"").await;
    let root = app.init_root().await;
    let (_, member) = app.add_user(&root, "alice").await;
    add_azure_key(&app, &root).await;
    app.mock
        .on(|_| Reply::json(200, completion_without_model(10, 20)));
    let body = r#"{"messages":[{"role":"user","content":"hi"}]}"#;
    let resp = azure_post(
        &app,
        "/openai/deployments/prod-4o/chat/completions?api-version=2099-01-01",
        &member,
        body,
    )
    .await;
    assert_eq!(resp.status(), 200);

    let got = &app.mock.received()[0];
    assert_eq!(got.path, "/openai/deployments/prod-4o/chat/completions");
    assert_eq!(
        got.query.as_deref(),
        Some("api-version=2024-10-21"),
        "the configured api-version, not the client's"
    );
    assert_eq!(got.header("api-key").as_deref(), Some("az-secret"));
    assert_eq!(got.header("authorization"), None);
    assert_eq!(
        got.header("x-ms-client-request-id").as_deref(),
        Some("client-1")
    );
    assert_eq!(
        &got.body[..],
        body.as_bytes(),
        "Azure reads the model from the URL"
    );

    // prod-4o is gpt-4o's deployment ($2.50 / $10 per 1M): (10 × 2.5 + 20 × 10) / 1M.
    let row = &app.usage_rows(1).await[0];
    assert_eq!(
        (row.route.as_str(), row.model.as_str()),
        ("/v1/chat/completions", "gpt-4o")
    );
    assert_eq!(row.cost_text(), "0.000225");
}

#[tokio::test]
async fn a_configured_deployment_reaches_openai_as_its_model() {
    let app = spawn_app_with(
        "[azure_deployments]\n\"text-embedding-3-small\" = \"embed\"\n\"gpt-4o-mini\" = \"mini\"",
    )
    .await;
    let (_, member) = app.with_team(1).await;
    app.mock.on(|_| {
        Reply::json(
            200,
            json!({"object":"list","model":"text-embedding-3-small",
                   "data":[{"object":"embedding","index":0,"embedding":[0.5]}],
                   "usage":{"prompt_tokens":5,"total_tokens":5}}),
        )
    });
    let resp = azure_post(
        &app,
        "/openai/deployments/embed/embeddings?api-version=2024-10-21",
        &member,
        r#"{"input":"hello"}"#,
    )
    .await;
    assert_eq!(resp.status(), 200);
    let answer: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(answer["data"][0]["embedding"], json!([0.5]));
    let got = &app.mock.received()[0];
    assert_eq!(
        (got.path.as_str(), got.query.as_deref()),
        ("/v1/embeddings", None)
    );
    assert_eq!(
        &got.body[..],
        br#"{"model":"text-embedding-3-small","input":"hello"}"#
    );
    // 5 tokens at $0.02 per 1M = 0.1 / 1M.
    let row = &app.usage_rows(1).await[0];
    assert_eq!(
        (
            row.route.as_str(),
            row.model.as_str(),
            row.prompt_tokens,
            row.total_tokens
        ),
        ("/v1/embeddings", "text-embedding-3-small", 5, 5)
    );
    assert_eq!(row.cost_text(), "0.0000001");
}

#[tokio::test]
async fn deployment_stream_gets_usage_and_the_client_sees_none() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(1).await;
    let events = chat_stream("gpt-4o-mini-2024-07-18", &["Hel", "lo"], Some((7, 2)));
    let chunks: Vec<&str> = events.iter().map(String::as_str).collect();
    app.mock.push(Reply::sse(&chunks));
    let body = r#"{"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let resp = azure_post(
        &app,
        "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21",
        &member,
        body,
    )
    .await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    // The usage-only chunk catgate asked for is not shown to a client that did not ask.
    assert_eq!(text, format!("{}{}{}", events[0], events[1], events[3]));

    let got = &app.mock.received()[0];
    assert_eq!(got.path, "/v1/chat/completions");
    assert_eq!(
        std::str::from_utf8(&got.body).unwrap(),
        r#"{"model":"gpt-4o-mini","stream_options":{"include_usage":true},"stream":true,"messages":[{"role":"user","content":"hi"}]}"#
    );
    // (7 × 0.15 + 2 × 0.6) / 1M = 2.25 / 1M.
    let row = &app.usage_rows(1).await[0];
    assert_eq!(
        (row.route.as_str(), row.model.as_str(), row.stream),
        ("/v1/chat/completions", "gpt-4o-mini-2024-07-18", true)
    );
    assert_eq!((row.prompt_tokens, row.completion_tokens), (7, 2));
    assert!(!row.estimated());
    assert_eq!(row.cost_text(), "0.00000225");
}

#[tokio::test]
async fn a_spooled_deployment_body_gets_model_and_stream_options() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(1).await;
    app.mock.push(Reply::sse(&["data: [DONE]\n\n"]));
    // Over the 1 MiB kept in memory, so the body is spooled and spliced from its file.
    let content = "x".repeat(1_200_000);
    let rest = format!(r#""stream":true,"messages":[{{"role":"user","content":"{content}"}}]}}"#);
    let resp = azure_post(
        &app,
        "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21",
        &member,
        &format!("{{{rest}"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "data: [DONE]\n\n");
    let got = &app.mock.received()[0];
    let want =
        format!(r#"{{"model":"gpt-4o-mini","stream_options":{{"include_usage":true}},{rest}"#);
    assert!(got.body == want.as_bytes(), "spliced body differs");
    // Only the model, when the client set stream_options itself.
    app.mock.push(Reply::sse(&["data: [DONE]\n\n"]));
    let rest = format!(
        r#""stream_options":{{"include_usage":true}},"stream":true,"messages":[{{"role":"user","content":"{content}"}}]}}"#
    );
    azure_post(
        &app,
        "/openai/deployments/gpt-4o-mini/chat/completions",
        &member,
        &format!("{{{rest}"),
    )
    .await;
    let got = &app.mock.received()[1];
    let want = format!(r#"{{"model":"gpt-4o-mini",{rest}"#);
    assert!(got.body == want.as_bytes(), "spliced body differs");
}

#[tokio::test]
async fn openai_v1_paths_are_v1_paths() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(1).await;
    let body = r#"{"model":"gpt-4o-mini","messages":[]}"#;
    let resp = azure_post(
        &app,
        "/openai/v1/chat/completions?api-version=preview",
        &member,
        body,
    )
    .await;
    assert_eq!(resp.status(), 200);
    let got = &app.mock.received()[0];
    assert_eq!(got.path, "/v1/chat/completions");
    assert_eq!(got.query.as_deref(), Some("api-version=preview"));
    assert_eq!(&got.body[..], body.as_bytes());
    let row = &app.usage_rows(1).await[0];
    assert_eq!(
        (row.route.as_str(), row.model.as_str()),
        ("/v1/chat/completions", "gpt-4o-mini")
    );
    assert_eq!(row.cost_text(), "0.00000855");
}

#[tokio::test]
async fn a_bad_token_is_401_in_openai_shape() {
    let app = spawn_app().await;
    app.with_team(1).await;
    let resp = azure_post(
        &app,
        "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
        "not-a-token",
        r#"{"messages":[]}"#,
    )
    .await;
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key("x-catgate-request-id"));
    let body: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"error":{
            "message":"Incorrect API key provided. Use your catgate token as the API key.",
            "type":"invalid_request_error","param":null,"code":"invalid_api_key"}})
    );
    assert!(app.mock.received().is_empty());
}

#[tokio::test]
async fn other_azure_paths_are_404_in_openai_shape() {
    let app = spawn_app().await;
    let (_, member) = app.with_team(1).await;
    for (method, path) in [
        (
            "GET",
            "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
        ),
        (
            "POST",
            "/openai/deployments/gpt-4o/images/generations?api-version=2024-10-21",
        ),
        ("POST", "/openai/deployments/gpt-4o"),
        ("GET", "/openai/models?api-version=2024-10-21"),
    ] {
        let (status, body) = app
            .call(method, path, Some(&member), Some(json!({"prompt":"x"})))
            .await;
        assert_eq!(status, 404, "{method} {path}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
        assert_eq!(body["error"]["code"], "unknown_url", "{body}");
        assert_eq!(body["error"]["param"], Value::Null, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(path.split('?').next().unwrap()),
            "{message}"
        );
    }
    assert!(app.mock.received().is_empty());
}
