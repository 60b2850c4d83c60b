//! Request paths the proxy refuses to forward. Upstreams and the proxies in front of them
//! normalise paths differently; a path that one reads as `/v1/x` and another as `/x` could
//! reach routes no member should call, so anything that could normalise differently is refused.

use percent_encoding::percent_decode_str;

/// False for paths with a backslash (raw or `%5c`) or a `.`/`..` segment, also when the dots
/// or the slash that would delimit them are percent-encoded (`%2e%2e`, `..%2f`, `%2f..`).
pub fn is_safe(path: &str) -> bool {
    // One decoding pass covers what an upstream decodes once; `%2f` becomes a separator here
    // so that `..%2f` and `%2f..` show up as segments.
    let decoded: Vec<u8> = percent_decode_str(path).collect();
    !decoded.contains(&b'\\')
        && !decoded
            .split(|b| *b == b'/')
            .any(|segment| segment == b"." || segment == b"..")
}

#[cfg(test)]
mod tests {
    use super::is_safe;

    #[test]
    fn refuses_dot_segments_and_backslashes_in_any_encoding() {
        for path in [
            "/v1/../x",
            "/v1/./x",
            "/v1/..",
            "/v1/.",
            "/v1/%2e%2e/x",
            "/v1/%2E%2E/x",
            "/v1/%2E./x",
            "/v1/.%2e/x",
            "/v1/%2e/x",
            "/v1/..%2fx",
            "/v1/..%2Fx",
            "/v1/x%2f..",
            "/v1/x%2f..%2fy",
            "/v1/a\\b",
            "/v1/a%5cb",
            "/v1/a%5Cb",
            "/v1/..\\x",
        ] {
            assert!(!is_safe(path), "{path} passed");
        }
    }

    #[test]
    fn ordinary_paths_pass() {
        for path in [
            "/v1/chat/completions",
            "/v1/models/gpt-4o..x",
            "/v1/files/...",
            "/v1/files/a.b",
            "/v1/a%2fb",
            "/v1/.well-known",
            "/v1/%2e%2e%2e",
        ] {
            assert!(is_safe(path), "{path} refused");
        }
    }
}
