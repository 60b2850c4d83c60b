//! The web dashboard at `/ui/`: the three hand-written files of `ui/`, compiled into the
//! binary (no build step, no CDN, nothing fetched at run time). The page only calls `/1`.
//!
//! Caching: every answer carries an ETag (a hash of the embedded bytes, computed once) and
//! `no-cache`, so a browser revalidates with `If-None-Match` and gets a 304 until the binary
//! changes. Every answer also carries a strict CSP: scripts and styles only from these files,
//! no inline code, no framing.

use std::sync::LazyLock;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use serde_json::json;

use crate::body::{json as json_body, ResponseBody};

/// One embedded file.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

pub const ASSETS: [Asset; 3] = [
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../ui/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../ui/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../ui/app.css"),
    },
];

/// The dashboard's whole weight, which must stay under [`MAX_TOTAL_BYTES`].
pub fn total_bytes() -> usize {
    ASSETS.iter().map(|a| a.bytes.len()).sum()
}

/// The page, all files together, stays light enough for a phone on a bad line.
pub const MAX_TOTAL_BYTES: usize = 200 * 1024;

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; font-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// ETags, in `ASSETS` order: FNV-1a of the bytes, quoted. Strong: same bytes, same tag.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let hash = a.bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
            });
            HeaderValue::from_str(&format!("\"{hash:016x}\""))
                .unwrap_or(HeaderValue::from_static("\"0\""))
        })
        .collect()
});

/// Answers a request whose path is `/ui` or starts with `/ui/`.
pub fn serve(method: &Method, path: &str, headers: &HeaderMap) -> Response<ResponseBody> {
    if path == "/ui" {
        let mut resp = with_security_headers(Response::new(ResponseBody::empty()));
        *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
        resp.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/ui/"));
        return resp;
    }
    let name = match path.strip_prefix("/ui/") {
        Some("") => "index.html",
        Some(name) => name,
        None => return not_found(),
    };
    let Some(index) = ASSETS.iter().position(|a| a.name == name) else {
        return not_found();
    };
    if method != Method::GET && method != Method::HEAD {
        let mut resp = json_body(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({ "error": "method not allowed" }),
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    let asset = &ASSETS[index];
    let etag = ETAGS[index].clone();
    let fresh = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag.as_bytes() == etag.as_bytes());
    let mut resp = if fresh {
        let mut resp = Response::new(ResponseBody::empty());
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        resp
    } else {
        let mut resp = Response::new(ResponseBody::Full(Some(Bytes::from_static(asset.bytes))));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        resp
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    with_security_headers(resp)
}

fn not_found() -> Response<ResponseBody> {
    with_security_headers(json_body(
        StatusCode::NOT_FOUND,
        &json!({ "error": "not found" }),
    ))
}

fn with_security_headers(mut resp: Response<ResponseBody>) -> Response<ResponseBody> {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(name: &str) -> &'static str {
        let asset = ASSETS.iter().find(|a| a.name == name).unwrap();
        std::str::from_utf8(asset.bytes).unwrap()
    }

    #[test]
    fn the_page_weighs_at_most_200_kb() {
        assert!(
            total_bytes() <= MAX_TOTAL_BYTES,
            "the dashboard is {} bytes",
            total_bytes()
        );
    }

    /// What the CSP forbids would break the page silently in a browser; refuse it here.
    #[test]
    fn no_inline_code_no_markup_from_strings_no_outside_urls() {
        let html = text("index.html");
        assert!(!html.contains("<style"), "inline <style>");
        assert!(!html.contains("style="), "inline style attribute");
        let handler = html.match_indices(" on").any(|(at, _)| {
            let name = html[at + 3..].trim_start_matches(|c: char| c.is_ascii_lowercase());
            name.starts_with('=')
        });
        assert!(!handler, "inline event handler");
        for tag in html.split("<script").skip(1) {
            assert!(tag.trim_start().starts_with("src="), "inline <script>");
        }
        let js = text("app.js");
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "eval(",
            "document.write",
        ] {
            assert!(!js.contains(banned), "app.js uses {banned}");
        }
        for asset in &ASSETS {
            let body = std::str::from_utf8(asset.bytes).unwrap();
            let outside = body.replace("http://www.w3.org/2000/svg", "");
            assert!(
                !outside.contains("http://") && !outside.contains("https://"),
                "{} refers to another site",
                asset.name
            );
        }
    }

    #[test]
    fn etags_are_stable_and_distinct() {
        assert_eq!(ETAGS.len(), ASSETS.len());
        assert_ne!(ETAGS[0], ETAGS[1]);
        assert_eq!(ETAGS[0], LazyLock::force(&ETAGS)[0]);
    }
}
