use crate::helpers::*;
use serde_json::json;

#[tokio::test]
async fn chat_completion_is_proxied_and_metered() {
    let app = spawn_app().await;
    let (root, member) = app.with_team(1).await;
    let (status, body) = app
        .post(
            "/v1/chat/completions",
            &member,
            json!({"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["usage"]["total_tokens"], 21);
    let rows = app.usage_rows(1).await;
    assert_eq!(rows[0].total_tokens, 21);
    assert_eq!(rows[0].cost_text(), "0.00000855");
    let (status, body) = app.get("/1/usages", &root).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!([{"userId": 2, "totalUnit": 21, "cost": "0.000009"}])
    );
}
