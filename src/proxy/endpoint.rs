//! Upstream base URLs: validation of what admins type, and the URL each request goes to
//! (OpenAI: `{base}/v1/X?q`; Azure: `{base}/openai/deployments/{D}/X?api-version=V`).

use std::collections::HashMap;

/// Validates an `http`/`https` base URL and returns it without a trailing `/` or `/v1`
/// (`https://api.openai.com/v1/` → `https://api.openai.com`).
pub fn normalize_base(text: &str) -> Result<String, &'static str> {
    let trimmed = text.trim();
    if trimmed.contains('#') || trimmed.contains('?') {
        return Err("endpoint must not have a query or fragment");
    }
    let uri: http::Uri = trimmed
        .parse()
        .map_err(|_| "endpoint must be an http(s) URL")?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http") | Some("https"));
    let host_ok = uri.host().is_some_and(|h| !h.is_empty());
    if !scheme_ok || !host_ok {
        return Err("endpoint must be an http(s) URL");
    }
    let mut base = trimmed.trim_end_matches('/').to_string();
    if let Some(stripped) = base.strip_suffix("/v1") {
        base = stripped.to_string();
    }
    Ok(base)
}

/// Resolves an Azure endpoint: a base URL, a bare resource name, or (when empty) the resource
/// from a key named `azure.<resource>` (opencatd's convention).
pub fn resolve_azure(endpoint: &str, key_name: &str) -> Result<String, &'static str> {
    let endpoint = endpoint.trim();
    let resource = if endpoint.is_empty() {
        key_name
            .strip_prefix("azure.")
            .filter(|r| !r.is_empty())
            .ok_or("azure_openai keys need an endpoint, or a name like azure.<resource>")?
    } else if endpoint.contains("://") {
        return normalize_base(endpoint);
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

/// The Azure deployment for `model`: configured, else the model without dots
/// (`gpt-3.5-turbo` → `gpt-35-turbo`).
pub fn azure_deployment(model: &str, deployments: &HashMap<String, String>) -> String {
    match deployments.get(model) {
        Some(d) => d.clone(),
        None => model.replace('.', ""),
    }
}

/// `{base}/openai/deployments/{deployment}/{op}?api-version={version}`.
pub fn azure_url(base: &str, deployment: &str, op: &str, api_version: &str) -> String {
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
    fn bases_are_normalized() {
        assert_eq!(
            normalize_base("https://api.openai.com/v1/").unwrap(),
            "https://api.openai.com"
        );
        assert_eq!(
            normalize_base("http://127.0.0.1:9000").unwrap(),
            "http://127.0.0.1:9000"
        );
        assert_eq!(
            normalize_base("https://gw.example/openai").unwrap(),
            "https://gw.example/openai"
        );
        assert!(normalize_base("ftp://x").is_err());
        assert!(normalize_base("not a url").is_err());
        assert!(normalize_base("").is_err());
    }

    #[test]
    fn azure_endpoints() {
        assert_eq!(
            resolve_azure("", "azure.myres").unwrap(),
            "https://myres.openai.azure.com"
        );
        assert_eq!(
            resolve_azure("myres", "k").unwrap(),
            "https://myres.openai.azure.com"
        );
        assert_eq!(
            resolve_azure("https://myres.openai.azure.com/", "k").unwrap(),
            "https://myres.openai.azure.com"
        );
        assert!(resolve_azure("", "plain").is_err());
        assert!(resolve_azure("bad name!", "k").is_err());
    }

    #[test]
    fn deployments() {
        let mut m = HashMap::new();
        m.insert("gpt-4o".to_string(), "prod-4o".to_string());
        assert_eq!(azure_deployment("gpt-4o", &m), "prod-4o");
        assert_eq!(azure_deployment("gpt-3.5-turbo", &m), "gpt-35-turbo");
        assert_eq!(
            azure_url("https://r.openai.azure.com", "gpt-35-turbo", "chat/completions", "2024-06-01"),
            "https://r.openai.azure.com/openai/deployments/gpt-35-turbo/chat/completions?api-version=2024-06-01"
        );
    }
}
