//! Azure OpenAI keys: URL and deployment mapping, `api-key`, content-filter chunks, pricing by
//! the response's model.

use serde_json::{json, Value};

use crate::helpers::*;

async fn add_azure_key(app: &TestApp, root: &str, name: &str) {
    let body = json!({"key":"az-secret","name":name,"api_type":"azure","endpoint":app.mock.url()});
    let (status, body) = app.post("/1/keys", root, body).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn chat_goes_to_the_deployment_url_with_api_key() {
    let app = spawn_app_with("[azure_deployments]\n\"gpt-4o\" = \"prod-4o\"").await;
    let root = app.init_root().await;
    let (_, member) = app.add_user(&root, "alice").await;
    add_azure_key(&app, &root, "az").await;
    app.mock
        .on(|_| Reply::json(200, chat_completion("gpt-35-turbo", "Hi", Some((10, 45)))));
    let req = json!({"model":"gpt-3.5-turbo","messages":[{"role":"user","content":"hi"}]});
    let (status, _) = app.post("/v1/chat/completions", &member, req.clone()).await;
    assert_eq!(status, 200);
    app.post(
        "/v1/chat/completions",
        &member,
        json!({"model":"gpt-4o","messages":[]}),
    )
    .await;
    app.post(
        "/v1/embeddings",
        &member,
        json!({"model":"text-embedding-3-small","input":"x"}),
    )
    .await;

    let got = app.mock.received();
    assert_eq!(
        got[0].path,
        "/openai/deployments/gpt-35-turbo/chat/completions"
    );
    // The default api-version accepts stream_options, so Azure streams report usage.
    assert_eq!(got[0].query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(got[0].header("api-key").as_deref(), Some("az-secret"));
    assert_eq!(got[0].header("authorization"), None);
    assert_eq!(got[0].json(), req);
    assert_eq!(got[1].path, "/openai/deployments/prod-4o/chat/completions");
    assert_eq!(
        got[2].path,
        "/openai/deployments/text-embedding-3-small/embeddings"
    );

    // Azure names the model gpt-35-turbo; it is priced as gpt-3.5-turbo ($0.50 / $1.50 per
    // 1M): (10 × 0.5 + 45 × 1.5) / 1M = 72.5 / 1M.
    let rows = app.usage_rows(3).await;
    assert_eq!(rows[0].model, "gpt-35-turbo");
    assert_eq!(rows[0].cost_text(), "0.0000725");
}

#[tokio::test]
async fn azure_keys_do_not_serve_other_routes() {
    let app = spawn_app().await;
    let root = app.init_root().await;
    let (_, member) = app.add_user(&root, "alice").await;
    add_azure_key(&app, &root, "az").await;
    let (status, body) = app
        .post(
            "/v1/images/generations",
            &member,
            json!({"model":"dall-e-3","prompt":"cat"}),
        )
        .await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "no_upstream_key");
    // /v1/models with only Azure keys: answered locally in OpenAI's list shape.
    let (status, body) = app.get("/v1/models", &member).await;
    assert_eq!(status, 200);
    assert_eq!(body["object"], "list");
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"gpt-4o-mini") && ids.contains(&"gpt-3.5-turbo"),
        "{ids:?}"
    );
    assert!(app.mock.received().is_empty());
}

#[tokio::test]
async fn content_filter_chunks_pass_and_old_api_versions_get_no_stream_options() {
    let app = spawn_app_with("[upstream]\nazure_api_version = \"2024-06-01\"").await;
    let root = app.init_root().await;
    let (_, member) = app.add_user(&root, "alice").await;
    add_azure_key(&app, &root, "az").await;
    let filter = r#"data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}]}"#;
    let delta = r#"data: {"choices":[{"delta":{"content":"Hello"},"index":0,"content_filter_results":{}}],"model":"gpt-4o-2024-05-13","object":"chat.completion.chunk"}"#;
    let stream = format!("{filter}\n\n{delta}\n\ndata: [DONE]\n\n");
    app.mock.push(Reply::sse(&[&stream]));
    let req =
        json!({"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Say hi"}]});
    let resp = app
        .http
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&member)
        .body(req.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), stream);
    let sent: Value = app.mock.received()[0].json();
    assert_eq!(
        sent, req,
        "api-version 2024-06-01 rejects stream_options, so none is added"
    );
    let r = &app.usage_rows(1).await[0];
    assert!(r.estimated());
    assert_eq!(r.model, "gpt-4o-2024-05-13");
    assert_eq!((r.prompt_tokens, r.completion_tokens), (9, 1));
    // gpt-4o-2024-05-13 has its own list price, $5 / $15 per 1M: (9 × 5 + 1 × 15) / 1M.
    assert_eq!(r.cost_text(), "0.00006");
}
