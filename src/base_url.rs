//! The one rule for an upstream base URL an admin or the config gives: `http`/`https` with a
//! host, no query or fragment, kept without a trailing `/` or `/v1` so that every provider can
//! append its own path to it.

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
            normalize_base(" http://127.0.0.1:9000 ").unwrap(),
            "http://127.0.0.1:9000"
        );
        assert_eq!(
            normalize_base("https://gw.example/openai").unwrap(),
            "https://gw.example/openai"
        );
        assert!(normalize_base("ftp://x").is_err());
        assert!(normalize_base("not a url").is_err());
        assert!(normalize_base("").is_err());
        assert!(normalize_base("https://x.example/?a=1").is_err());
        assert!(normalize_base("https://x.example/#f").is_err());
    }
}
