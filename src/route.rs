//! What a `/v1` request is, parsed once from its path: the one place that knows which routes
//! stream usage, are billed by token, can be estimated, or are billed per request. Which
//! provider serves a route is `upstream`'s business. Records keep the request's path;
//! [`Route::parse`] reads it back (e.g. for `catgate reprice`).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
    Models,
    Images,
    Audio,
    Moderations,
    Other,
}

impl Route {
    pub fn parse(path: &str) -> Route {
        match path {
            "/v1/chat/completions" => Route::ChatCompletions,
            "/v1/completions" => Route::Completions,
            "/v1/embeddings" => Route::Embeddings,
            "/v1/responses" => Route::Responses,
            "/v1/models" => Route::Models,
            "/v1/moderations" => Route::Moderations,
            p if p.starts_with("/v1/images/") => Route::Images,
            p if p.starts_with("/v1/audio/") => Route::Audio,
            _ => Route::Other,
        }
    }

    /// The route's name in metrics: a fixed set, whatever paths clients send.
    pub fn label(self) -> &'static str {
        match self {
            Route::ChatCompletions => "chat_completions",
            Route::Completions => "completions",
            Route::Embeddings => "embeddings",
            Route::Responses => "responses",
            Route::Models => "models",
            Route::Images => "images",
            Route::Audio => "audio",
            Route::Moderations => "moderations",
            Route::Other => "other",
        }
    }

    /// Streams that carry usage when `stream_options.include_usage` is set.
    pub fn streams_usage(self) -> bool {
        matches!(self, Route::ChatCompletions | Route::Completions)
    }

    /// Answers billed by token.
    pub fn billed_by_tokens(self) -> bool {
        matches!(
            self,
            Route::ChatCompletions | Route::Completions | Route::Embeddings | Route::Responses
        )
    }

    /// Whose prompt and completion tiktoken can count when the upstream sent no usage.
    pub fn estimable(self) -> bool {
        matches!(
            self,
            Route::ChatCompletions | Route::Completions | Route::Embeddings
        )
    }

    /// Billed by something the answer may not count in tokens (per image, per second).
    pub fn billable(self) -> bool {
        self.billed_by_tokens() || matches!(self, Route::Images | Route::Audio)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(Route::parse("/v1/chat/completions"), Route::ChatCompletions);
        assert_eq!(Route::parse("/v1/images/generations"), Route::Images);
        assert_eq!(Route::parse("/v1/audio/speech"), Route::Audio);
        assert_eq!(Route::parse("/v1/files"), Route::Other);
        assert_eq!(Route::parse("/v1/chat/completions/x"), Route::Other);
        assert!(Route::Responses.billed_by_tokens() && !Route::Responses.estimable());
        assert!(Route::Audio.billable() && !Route::Moderations.billable());
    }
}
