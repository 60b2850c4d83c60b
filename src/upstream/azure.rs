//! Azure OpenAI: header `api-key: <key>`, an endpoint that may be a bare resource name (or come
//! from a key named `azure.<resource>`), deployment URLs with `api-version`, and only the three
//! routes a deployment serves.

use std::collections::HashMap;

use http::HeaderName;

use super::{Call, Settings, Wire};
use crate::route::Route;

pub(super) struct Azure;

impl Wire for Azure {
    fn auth(&self, secret: &str) -> (HeaderName, String) {
        (HeaderName::from_static("api-key"), secret.to_string())
    }

    /// A base URL, a bare resource name, or (when empty) the resource from a key named
    /// `azure.<resource>` (opencatd's convention).
    fn resolve_endpoint(&self, endpoint: &str, key_name: &str) -> Result<String, &'static str> {
        let endpoint = endpoint.trim();
        let resource = if endpoint.is_empty() {
            key_name
                .strip_prefix("azure.")
                .filter(|r| !r.is_empty())
                .ok_or("azure_openai keys need an endpoint, or a name like azure.<resource>")?
        } else if endpoint.contains("://") {
            return crate::base_url::normalize_base(endpoint);
        } else {
            endpoint
        };
        let valid = resource.len() <= 64
            && resource
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !valid {
            return Err("azure resource name may only hold letters, digits and '-'");
        }
        Ok(format!("https://{resource}.openai.azure.com"))
    }

    /// A deployment is addressed by model, so a body without one cannot go to Azure.
    fn serves(&self, route: Route, model: Option<&str>) -> bool {
        operation(route).is_some() && model.is_some()
    }

    fn url(&self, base: &str, call: &Call<'_>, settings: &Settings<'_>) -> Option<String> {
        let op = operation(call.route)?;
        let deployment = deployment(call.model?, settings.azure_deployments);
        Some(deployment_url(
            base,
            &deployment,
            op,
            settings.azure_api_version,
        ))
    }

    /// Azure accepts `stream_options` from api-version 2024-09-01 (previews included) on;
    /// older versions reject the unknown field, so catgate then leaves the body alone and
    /// estimates.
    fn takes_stream_options(&self, settings: &Settings<'_>) -> bool {
        settings.azure_api_version >= "2024-09-01"
    }

    /// The deployment in the URL names the model.
    fn reads_model_from_body(&self) -> bool {
        false
    }

    fn probe_url(&self, base: &str, settings: &Settings<'_>) -> String {
        let version = percent_encode_segment(settings.azure_api_version);
        format!("{base}/openai/models?api-version={version}")
    }
}

/// The deployment operation serving `route`, if a deployment can.
fn operation(route: Route) -> Option<&'static str> {
    match route {
        Route::ChatCompletions => Some("chat/completions"),
        Route::Completions => Some("completions"),
        Route::Embeddings => Some("embeddings"),
        _ => None,
    }
}

/// The deployment for `model`: configured (`[azure_deployments]`), else the model without dots
/// (`gpt-3.5-turbo` → `gpt-35-turbo`, Azure's naming).
fn deployment(model: &str, deployments: &HashMap<String, String>) -> String {
    match deployments.get(model) {
        Some(d) => d.clone(),
        None => model.replace('.', ""),
    }
}

/// `{base}/openai/deployments/{deployment}/{op}?api-version={version}`; the deployment comes
/// from the client's body, so it is encoded to stay one path segment.
fn deployment_url(base: &str, deployment: &str, op: &str, api_version: &str) -> String {
    let deployment = percent_encode_segment(deployment);
    let version = percent_encode_segment(api_version);
    format!("{base}/openai/deployments/{deployment}/{op}?api-version={version}")
}

fn percent_encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let resolve = |e, name| Azure.resolve_endpoint(e, name);
        assert_eq!(
            resolve("", "azure.myres").unwrap(),
            "https://myres.openai.azure.com"
        );
        assert_eq!(
            resolve("myres", "k").unwrap(),
            "https://myres.openai.azure.com"
        );
        assert_eq!(
            resolve("https://myres.openai.azure.com/", "k").unwrap(),
            "https://myres.openai.azure.com"
        );
        assert!(resolve("", "plain").is_err());
        assert!(resolve("", "azure.").is_err());
        assert!(resolve("bad name!", "k").is_err());
        assert!(resolve(&"r".repeat(65), "k").is_err());
    }

    #[test]
    fn deployments() {
        let mut m = HashMap::new();
        m.insert("gpt-4o".to_string(), "prod-4o".to_string());
        assert_eq!(deployment("gpt-4o", &m), "prod-4o");
        assert_eq!(deployment("gpt-3.5-turbo", &m), "gpt-35-turbo");
        assert_eq!(deployment("gpt-4.1-mini", &m), "gpt-41-mini");
        assert_eq!(
            deployment_url("https://r.openai.azure.com", "gpt-35-turbo", "chat/completions", "2024-06-01"),
            "https://r.openai.azure.com/openai/deployments/gpt-35-turbo/chat/completions?api-version=2024-06-01"
        );
        // A model name from the body cannot add path segments or query parameters.
        assert_eq!(
            deployment_url("https://r", "a/b?c", "embeddings", "v 1"),
            "https://r/openai/deployments/a%2Fb%3Fc/embeddings?api-version=v%201"
        );
    }

    #[test]
    fn stream_options_by_api_version() {
        let d = HashMap::new();
        let takes = |v| {
            Azure.takes_stream_options(&Settings {
                azure_api_version: v,
                azure_deployments: &d,
            })
        };
        assert!(!takes("2024-06-01"));
        assert!(takes("2024-09-01"));
        assert!(takes("2024-10-21"));
        assert!(takes("2025-01-01-preview"));
    }
}
