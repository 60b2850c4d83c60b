//! The providers seen from outside: URLs, endpoints, headers, probes, and which keys serve what.

use std::collections::HashMap;

use super::*;

fn settings(deployments: &HashMap<String, String>) -> Settings<'_> {
    Settings {
        azure_api_version: "2024-10-21",
        azure_deployments: deployments,
    }
}

fn call<'a>(path_and_query: &'a str, model: Option<&'a str>) -> Call<'a> {
    let path = path_and_query.split('?').next().unwrap_or_default();
    Call {
        route: Route::parse(path),
        path_and_query,
        model,
    }
}

#[test]
fn urls() {
    let mut d = HashMap::new();
    d.insert("gpt-4o".to_string(), "prod-4o".to_string());
    let s = settings(&d);
    let cases = [
        (
            Provider::OpenAi,
            "https://api.openai.com",
            call("/v1/chat/completions", Some("gpt-4o")),
            Some("https://api.openai.com/v1/chat/completions"),
        ),
        (
            Provider::OpenAi,
            "http://127.0.0.1:9000/gw",
            call("/v1/files/f-1/content?limit=2", None),
            Some("http://127.0.0.1:9000/gw/v1/files/f-1/content?limit=2"),
        ),
        (
            Provider::Azure,
            "https://res.openai.azure.com",
            call("/v1/chat/completions", Some("gpt-4o")),
            Some("https://res.openai.azure.com/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21"),
        ),
        // The client's query does not reach Azure; api-version is catgate's.
        (
            Provider::Azure,
            "https://res.openai.azure.com",
            call("/v1/embeddings?x=1", Some("text-embedding-3.5")),
            Some("https://res.openai.azure.com/openai/deployments/text-embedding-35/embeddings?api-version=2024-10-21"),
        ),
        (
            Provider::Azure,
            "https://res.openai.azure.com",
            call("/v1/completions", Some("gpt-3.5-turbo-instruct")),
            Some("https://res.openai.azure.com/openai/deployments/gpt-35-turbo-instruct/completions?api-version=2024-10-21"),
        ),
        (Provider::Azure, "https://r", call("/v1/models", None), None),
        (Provider::Azure, "https://r", call("/v1/responses", Some("gpt-4o")), None),
        (Provider::Azure, "https://r", call("/v1/chat/completions", None), None),
    ];
    for (provider, base, call, want) in cases {
        assert_eq!(
            provider.url(base, &call, &s).as_deref(),
            want,
            "{provider:?} {call:?}"
        );
    }
}

#[test]
fn endpoints_as_stored_and_as_used() {
    let p = Provider::OpenAi;
    assert_eq!(p.resolve_endpoint("  ", "k").unwrap(), "");
    assert_eq!(
        p.resolve_endpoint(" https://gw.example/v1/ ", "k").unwrap(),
        "https://gw.example"
    );
    assert!(p.resolve_endpoint("gw.example", "k").is_err());
    assert_eq!(
        Provider::Azure.resolve_endpoint(" ", "azure.res").unwrap(),
        "https://res.openai.azure.com"
    );
    let default = "https://api.openai.com";
    let cases = [
        (Provider::OpenAi, "", "k", default),
        (
            Provider::OpenAi,
            "https://gw.example/v1",
            "k",
            "https://gw.example",
        ),
        // Unresolvable rows stay as stored: their requests then fail, not someone else's.
        (Provider::OpenAi, "gw.example", "k", "gw.example"),
        (Provider::Azure, "res", "k", "https://res.openai.azure.com"),
        (
            Provider::Azure,
            "",
            "azure.res",
            "https://res.openai.azure.com",
        ),
        (Provider::Azure, "", "plain", ""),
    ];
    for (provider, stored, name, want) in cases {
        assert_eq!(provider.base_url(stored, name, default), want, "{stored:?}");
    }
}

#[test]
fn auth_headers_are_sensitive() {
    let (name, value) = Provider::OpenAi.auth_header("sk-1").unwrap();
    assert_eq!(
        (name.as_str(), value.to_str().unwrap()),
        ("authorization", "Bearer sk-1")
    );
    assert!(value.is_sensitive());
    let (name, value) = Provider::Azure.auth_header("abc").unwrap();
    assert_eq!((name.as_str(), value.to_str().unwrap()), ("api-key", "abc"));
    assert!(value.is_sensitive());
    assert!(Provider::OpenAi.auth_header("sk\n1").is_none());
}

#[test]
fn probes() {
    let d = HashMap::new();
    let s = settings(&d);
    let r = Provider::OpenAi
        .probe("https://api.openai.com", "sk-1", &s)
        .unwrap();
    assert_eq!(r.method(), http::Method::GET);
    assert_eq!(r.uri(), "https://api.openai.com/v1/models");
    assert_eq!(r.headers()["authorization"], "Bearer sk-1");
    let r = Provider::Azure
        .probe("https://res.openai.azure.com", "abc", &s)
        .unwrap();
    assert_eq!(
        r.uri(),
        "https://res.openai.azure.com/openai/models?api-version=2024-10-21"
    );
    assert_eq!(r.headers()["api-key"], "abc");
    assert!(Provider::OpenAi.probe("not a url", "sk-1", &s).is_none());
}

#[test]
fn provider_sets() {
    let chat = ProviderSet::serving(Route::ChatCompletions, Some("gpt-4o"));
    assert!(chat.contains(Provider::OpenAi) && chat.contains(Provider::Azure));
    for (route, model) in [
        (Route::ChatCompletions, None),
        (Route::Models, None),
        (Route::Responses, Some("gpt-4o")),
        (Route::Images, Some("dall-e-3")),
        (Route::Other, None),
    ] {
        let set = ProviderSet::serving(route, model);
        assert!(set.contains(Provider::OpenAi) && !set.contains(Provider::Azure));
        assert_ne!(set.index(), chat.index());
    }
    assert!(chat.index() < ProviderSet::COUNT);
    assert_eq!(Provider::from(ApiType::Azure), Provider::Azure);
    assert_eq!(Provider::from(ApiType::OpenAi), Provider::OpenAi);
}
