//! OpenAI (and any server speaking its API at `{base}/v1`): `Authorization: Bearer <key>`, the
//! client's path and query appended to the base as sent, every route, `stream_options` always.

use http::{header, HeaderName};

use super::{Call, Settings, Wire};
use crate::route::Route;

pub(super) struct OpenAi;

impl Wire for OpenAi {
    fn auth(&self, secret: &str) -> (HeaderName, String) {
        (header::AUTHORIZATION, format!("Bearer {secret}"))
    }

    /// Empty stays empty: the key then follows `upstream.openai_base_url`, also when the
    /// config changes later.
    fn resolve_endpoint(&self, endpoint: &str, _key_name: &str) -> Result<String, &'static str> {
        if endpoint.is_empty() {
            Ok(String::new())
        } else {
            crate::base_url::normalize_base(endpoint)
        }
    }

    fn serves(&self, _route: Route, _model: Option<&str>) -> bool {
        true
    }

    /// `{base}/v1/X?q`: the path was checked for dot segments before (`proxy::path`), and the
    /// base has no `/v1` of its own.
    fn url(&self, base: &str, call: &Call<'_>, _settings: &Settings<'_>) -> Option<String> {
        Some(format!("{base}{}", call.path_and_query))
    }

    fn takes_stream_options(&self, _settings: &Settings<'_>) -> bool {
        true
    }

    fn reads_model_from_body(&self) -> bool {
        true
    }

    fn probe_url(&self, base: &str, _settings: &Settings<'_>) -> String {
        format!("{base}/v1/models")
    }
}
