//! Upstream providers. Everything catgate knows about one provider's wire rules lives in that
//! provider's file: its credential header, what an admin may type as its endpoint, which
//! routes it serves, the URL a request goes to, whether it takes `stream_options`, and the
//! request that checks a key. The rest of catgate sees only [`Provider`] and [`ProviderSet`].
//!
//! Why an enum in front of a private trait: the enum is `Copy`, is what a pooled key carries
//! and what the stored `ApiType` converts to; the trait keeps each provider whole in one file
//! (`openai.rs`, `azure.rs`) instead of spread over one `match` per rule. A new provider is one
//! file implementing [`Wire`], a variant with its arm in [`Provider::wire`], and its stored
//! spelling in `ApiType`.

mod azure;

pub mod client;
pub mod mask;
mod openai;
pub mod pool;

use std::collections::HashMap;

use http::{HeaderName, HeaderValue};

pub use crate::base_url::normalize_base;

use crate::route::Route;
use crate::store::keys::ApiType;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    OpenAi,
    Azure,
}

/// The configuration the wire rules read, borrowed from `Config` (`Settings::of`);
/// passed in rather than imported so that `config` may use this module's URL rule.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    pub azure_api_version: &'a str,
    /// Model → deployment name (`[azure_deployments]`).
    pub azure_deployments: &'a HashMap<String, String>,
}

impl<'a> Settings<'a> {
    /// What the wire rules read from the loaded config.
    pub fn of(config: &'a crate::config::Config) -> Settings<'a> {
        Settings {
            azure_api_version: &config.upstream.azure_api_version,
            azure_deployments: &config.azure_deployments,
        }
    }
}

/// What a provider needs to know about one request to address it.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub route: Route,
    /// As the client sent it (`/v1/X?q`), already checked by `proxy::path`.
    pub path_and_query: &'a str,
    /// The body's `model`, if it named one.
    pub model: Option<&'a str>,
}

/// One provider's wire rules, implemented by a unit struct in the provider's file.
trait Wire: Sync {
    /// The credential header's name and value for `secret` (marked sensitive by the caller).
    fn auth(&self, secret: &str) -> (HeaderName, String);
    /// The stored form of an endpoint an admin typed (trimmed) for the key `key_name`; `""`
    /// stands for the configured default base (`upstream.openai_base_url`).
    fn resolve_endpoint(&self, endpoint: &str, key_name: &str) -> Result<String, &'static str>;
    fn serves(&self, route: Route, model: Option<&str>) -> bool;
    /// `None` when this provider cannot serve `call`.
    fn url(&self, base: &str, call: &Call<'_>, settings: &Settings<'_>) -> Option<String>;
    fn takes_stream_options(&self, settings: &Settings<'_>) -> bool;
    /// Whether the upstream learns the model from the body (else from the URL).
    fn reads_model_from_body(&self) -> bool;
    fn probe_url(&self, base: &str, settings: &Settings<'_>) -> String;
}

impl Provider {
    /// Every provider, in the order of their bits in [`ProviderSet`].
    pub const ALL: [Provider; 2] = [Provider::OpenAi, Provider::Azure];

    fn wire(self) -> &'static dyn Wire {
        match self {
            Provider::OpenAi => &openai::OpenAi,
            Provider::Azure => &azure::Azure,
        }
    }

    /// The ready credential header for `secret`, marked sensitive so that no `Debug` of a
    /// request shows it; `None` if the secret cannot be a header value.
    pub fn auth_header(self, secret: &str) -> Option<(HeaderName, HeaderValue)> {
        let (name, value) = self.wire().auth(secret);
        let mut value = HeaderValue::from_str(&value).ok()?;
        value.set_sensitive(true);
        Some((name, value))
    }

    /// Validates what an admin typed as a key's endpoint and returns what to store.
    pub fn resolve_endpoint(self, endpoint: &str, key_name: &str) -> Result<String, &'static str> {
        self.wire().resolve_endpoint(endpoint.trim(), key_name)
    }

    /// The base URL a stored key's requests go to: its endpoint resolved again (rows written
    /// before validation existed are kept as stored, and then fail as an invalid URL at
    /// request time rather than at load), or `default_base` when the stored endpoint is empty.
    pub fn base_url(self, stored: &str, key_name: &str, default_base: &str) -> String {
        let stored = stored.trim();
        match self.resolve_endpoint(stored, key_name) {
            Ok(base) if base.is_empty() => default_base.to_string(),
            Ok(base) => base,
            Err(_) => stored.to_string(),
        }
    }

    /// Whether a key of this provider can serve `route` for a body naming `model`.
    pub fn serves(self, route: Route, model: Option<&str>) -> bool {
        self.wire().serves(route, model)
    }

    /// Where `call` goes on a key whose base URL is `base`; `None` if this provider cannot
    /// serve it.
    pub fn url(self, base: &str, call: &Call<'_>, settings: &Settings<'_>) -> Option<String> {
        self.wire().url(base, call, settings)
    }

    /// Whether this provider accepts `stream_options` in a request body (else catgate must not
    /// splice `include_usage` in, and estimates the stream instead).
    pub fn takes_stream_options(self, settings: &Settings<'_>) -> bool {
        self.wire().takes_stream_options(settings)
    }

    /// Whether this provider learns the model from the request body (OpenAI) rather than from
    /// the URL (Azure deployments): an Azure-style request without a body `model` must then
    /// be sent one.
    pub fn reads_model_from_body(self) -> bool {
        self.wire().reads_model_from_body()
    }

    /// The cheap authenticated request that tells whether a key works (OpenAI: `GET
    /// {base}/v1/models`; Azure: `GET {base}/openai/models?api-version=V`). `None` when the
    /// secret cannot be a header or the base does not form a URL.
    pub fn probe(
        self,
        base: &str,
        secret: &str,
        settings: &Settings<'_>,
    ) -> Option<http::Request<()>> {
        Some(probe_request(
            self.probe_uri(base, settings)?,
            self.auth_header(secret)?,
        ))
    }

    /// Where the probe of a key whose base URL is `base` goes; `None` if it forms no URL.
    pub fn probe_uri(self, base: &str, settings: &Settings<'_>) -> Option<http::Uri> {
        self.wire().probe_url(base, settings).parse().ok()
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A bodiless `GET uri` carrying the credential header `auth`.
pub fn probe_request(uri: http::Uri, auth: (HeaderName, HeaderValue)) -> http::Request<()> {
    let mut request = http::Request::new(());
    *request.uri_mut() = uri;
    request.headers_mut().insert(auth.0, auth.1);
    request
}

/// The stored spelling of a provider (`ApiType`, in the store) is converted here so the store
/// stays ignorant of wire rules.
impl From<ApiType> for Provider {
    fn from(api_type: ApiType) -> Provider {
        match api_type {
            ApiType::OpenAi => Provider::OpenAi,
            ApiType::Azure => Provider::Azure,
        }
    }
}

/// The providers that can serve one call. Also the index of the key pool's round-robin
/// counter: calls served by the same kinds of keys share one rotation, and a call only OpenAI
/// keys serve does not skew the rotation of calls Azure keys serve too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderSet(u8);

impl ProviderSet {
    /// How many distinct sets there are (the number of counters a pool keeps).
    pub const COUNT: usize = 1 << Provider::ALL.len();

    pub fn serving(route: Route, model: Option<&str>) -> ProviderSet {
        ProviderSet(
            Provider::ALL
                .iter()
                .filter(|p| p.serves(route, model))
                .fold(0, |bits, p| bits | p.bit()),
        )
    }

    pub fn contains(self, provider: Provider) -> bool {
        self.0 & provider.bit() != 0
    }

    /// In `0..COUNT`.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

#[cfg(test)]
mod tests;
