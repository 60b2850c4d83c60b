//! Which `/v1` request an inbound path stands for, so that Azure-style clients go through the
//! one `/v1` pipeline (failover, metering, streaming) instead of a fork of it:
//! - `/v1/X?q` is itself;
//! - `/openai/v1/X?q` (Azure's v1 API) is `/v1/X?q`;
//! - `POST /openai/deployments/{d}/{op}?api-version=…` is `POST /v1/{op}` for the model deployed
//!   as `{d}`. The client's query (only `api-version`) is Azure's business: an OpenAI key is sent
//!   `/v1/{op}` alone, an Azure key the configured api-version.
//!
//! Usage records keep the `/v1` path, so reports group Azure-style traffic with `/v1` traffic.

use std::collections::HashMap;

use http::{Method, Uri};
use percent_encoding::percent_decode_str;

use super::attempt::ModelSplice;
use super::request::Inspected;
use crate::error::ProxyError;
use crate::upload::{self, RequestBody};

/// The operations a deployment serves, as `/v1` paths.
const DEPLOYMENT_OPS: [(&str, &str); 3] = [
    ("chat/completions", "/v1/chat/completions"),
    ("completions", "/v1/completions"),
    ("embeddings", "/v1/embeddings"),
];

/// The `/v1` request an inbound request stands for.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    /// The `/v1` path: the route, and the usage record's `route`.
    pub path: String,
    /// What an OpenAI key is sent after its base URL.
    pub path_and_query: String,
    /// For a deployment path: the model that deployment serves.
    pub deployment_model: Option<String>,
}

/// The target of `method uri`; an Azure-style path catgate does not serve is a 404.
pub fn target(
    method: &Method,
    uri: &Uri,
    deployments: &HashMap<String, String>,
) -> Result<Target, ProxyError> {
    let path = uri.path();
    let with_query = |path: &str| match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    if path == "/v1" || path.starts_with("/v1/") {
        return Ok(Target {
            path: path.to_string(),
            path_and_query: with_query(path),
            deployment_model: None,
        });
    }
    if let Some(v1) = path
        .strip_prefix("/openai")
        .filter(|p| p.starts_with("/v1/"))
    {
        return Ok(Target {
            path: v1.to_string(),
            path_and_query: with_query(v1),
            deployment_model: None,
        });
    }
    let unknown = || {
        ProxyError::NotFound(format!(
            "{method} {path}: Azure-style clients can call POST /openai/deployments/{{deployment}}/chat/completions, /completions or /embeddings, and /openai/v1/..."
        ))
    };
    let rest = path
        .strip_prefix("/openai/deployments/")
        .ok_or_else(unknown)?;
    let (deployment, op) = rest.split_once('/').ok_or_else(unknown)?;
    let v1 = DEPLOYMENT_OPS
        .iter()
        .find(|(name, _)| *name == op)
        .map(|(_, v1)| *v1)
        .filter(|_| method == Method::POST)
        .ok_or_else(unknown)?;
    let deployment = percent_decode_str(deployment)
        .decode_utf8()
        .ok()
        .filter(|d| !d.is_empty())
        .ok_or_else(unknown)?;
    Ok(Target {
        path: v1.to_string(),
        path_and_query: v1.to_string(),
        deployment_model: Some(model_for(&deployment, deployments)),
    })
}

/// The model deployed as `deployment`: the `[azure_deployments]` entry naming it (the first
/// by name if several do, so the choice does not depend on hash order), else the deployment
/// name itself.
fn model_for(deployment: &str, deployments: &HashMap<String, String>) -> String {
    deployments
        .iter()
        .filter(|(_, d)| d.as_str() == deployment)
        .map(|(model, _)| model)
        .min()
        .cloned()
        .unwrap_or_else(|| deployment.to_string())
}

/// Applies a deployment request's model: it routes and meters the request (the deployment, not
/// the body, decides where an Azure-style request goes), and when the body names none, the
/// returned splice is what an OpenAI key must be sent.
pub async fn deployment_model(
    model: Option<String>,
    body: &RequestBody,
    inspected: &mut Inspected,
) -> Option<ModelSplice> {
    let model = model?;
    let splice = match inspected.model {
        Some(_) => None,
        None => model_splice(&model, body).await,
    };
    inspected.model = Some(model);
    splice
}

/// The `model` member for an object body: the model in OpenAI's spelling (`gpt-35-turbo` →
/// `gpt-3.5-turbo`); a spooled body also gets where it goes (after its `{`). `None` for a body
/// that is no JSON object.
async fn model_splice(model: &str, body: &RequestBody) -> Option<ModelSplice> {
    let model = crate::metering::pricing::canonical_model(model).into_owned();
    if let Some(bytes) = body.in_memory() {
        let object = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        return object.then_some(ModelSplice { model, at: None });
    }
    let body = body.clone();
    let at =
        tokio::task::spawn_blocking(move || upload::splice_point(&body.head_blocking(64), false))
            .await
            .ok()
            .flatten()?;
    Some(ModelSplice {
        model,
        at: Some(at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target_of(method: Method, uri: &str) -> Result<Target, ProxyError> {
        let mut deployments = HashMap::new();
        deployments.insert("gpt-4o".to_string(), "prod-4o".to_string());
        deployments.insert("gpt-4o-2024-08-06".to_string(), "prod-4o".to_string());
        target(&method, &uri.parse().unwrap(), &deployments)
    }

    fn ok(path: &str, path_and_query: &str, model: Option<&str>) -> Target {
        Target {
            path: path.into(),
            path_and_query: path_and_query.into(),
            deployment_model: model.map(String::from),
        }
    }

    #[test]
    fn v1_paths_are_themselves_and_openai_v1_drops_its_prefix() {
        assert_eq!(
            target_of(Method::GET, "/v1/models?x=1").unwrap(),
            ok("/v1/models", "/v1/models?x=1", None)
        );
        assert_eq!(
            target_of(
                Method::POST,
                "/openai/v1/chat/completions?api-version=preview"
            )
            .unwrap(),
            ok(
                "/v1/chat/completions",
                "/v1/chat/completions?api-version=preview",
                None
            )
        );
    }

    #[test]
    fn deployments_map_to_v1_ops_and_models() {
        assert_eq!(
            target_of(
                Method::POST,
                "/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21"
            )
            .unwrap(),
            ok(
                "/v1/chat/completions",
                "/v1/chat/completions",
                Some("gpt-4o")
            )
        );
        assert_eq!(
            target_of(Method::POST, "/openai/deployments/gpt-35-turbo/completions").unwrap(),
            ok("/v1/completions", "/v1/completions", Some("gpt-35-turbo"))
        );
        assert_eq!(
            target_of(Method::POST, "/openai/deployments/a%20b/embeddings").unwrap(),
            ok("/v1/embeddings", "/v1/embeddings", Some("a b"))
        );
    }

    #[test]
    fn other_azure_paths_are_404() {
        for (method, uri) in [
            (Method::GET, "/openai/deployments/d/chat/completions"),
            (Method::POST, "/openai/deployments/d/images/generations"),
            (Method::POST, "/openai/deployments/d"),
            (Method::POST, "/openai/deployments//embeddings"),
            (Method::POST, "/openai/deployments/%FF/embeddings"),
            (Method::GET, "/openai/models"),
            (Method::GET, "/openai"),
            (Method::GET, "/openai/v1"),
        ] {
            assert!(
                matches!(target_of(method, uri), Err(ProxyError::NotFound(_))),
                "{uri}"
            );
        }
    }

    #[tokio::test]
    async fn a_deployment_model_routes_and_is_added_only_when_the_body_has_none() {
        let body = RequestBody::Memory(bytes::Bytes::from_static(b" {\"messages\":[]}"));
        let mut inspected = Inspected::default();
        let splice = deployment_model(Some("gpt-35-turbo".into()), &body, &mut inspected).await;
        assert_eq!(
            splice,
            Some(ModelSplice {
                model: "gpt-3.5-turbo".into(),
                at: None
            })
        );
        assert_eq!(inspected.model.as_deref(), Some("gpt-35-turbo"));

        let mut inspected = Inspected {
            model: Some("gpt-4o-2024-08-06".into()),
            ..Inspected::default()
        };
        let splice = deployment_model(Some("gpt-4o".into()), &body, &mut inspected).await;
        assert_eq!((splice, inspected.model.as_deref()), (None, Some("gpt-4o")));

        let not_object = RequestBody::Memory(bytes::Bytes::from_static(b"[1]"));
        let mut inspected = Inspected::default();
        assert_eq!(
            deployment_model(Some("m".into()), &not_object, &mut inspected).await,
            None
        );
        let mut inspected = Inspected::default();
        assert_eq!(deployment_model(None, &body, &mut inspected).await, None);
        assert_eq!(inspected.model, None);
    }
}
