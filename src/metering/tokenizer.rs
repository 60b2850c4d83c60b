//! Fallback token counting with tiktoken-rs, for answers that came without a `usage` object.
//!
//! Both encodings are built once (the BPE tables ship inside tiktoken-rs, so no network) and the
//! `Tokenizer` is shared behind an `Arc`. Counts are estimates: they follow OpenAI's cookbook
//! recipe for chat, and ignore tools, images and other extras.

use std::fmt;

use serde_json::Value;
use tiktoken_rs::CoreBPE;

/// Tokens around every chat message (`<|start|>{role}\n{content}<|end|>\n`), per the cookbook.
const TOKENS_PER_MESSAGE: u64 = 3;
/// Extra token for a message carrying `name`.
const TOKENS_PER_NAME: u64 = 1;
/// Every reply is primed with `<|start|>assistant<|message|>`.
const REPLY_PRIMER: u64 = 3;

/// Model-name prefixes that use o200k_base; everything else uses cl100k_base. gpt-4.5 and gpt-5
/// are o200k models in tiktoken's own table too.
const O200K_PREFIXES: &[&str] = &["gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5"];
/// o-series families: the bare name or the name followed by '-' (o1-mini, o3-2025-04-16).
const O200K_FAMILIES: &[&str] = &["o1", "o3", "o4"];

/// Building an encoding from its embedded BPE table failed.
#[derive(Debug)]
pub struct TokenizerError {
    encoding: &'static str,
    reason: String,
}

impl fmt::Display for TokenizerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot load the {} encoding: {}",
            self.encoding, self.reason
        )
    }
}

impl std::error::Error for TokenizerError {}

pub struct Tokenizer {
    cl100k: CoreBPE,
    o200k: CoreBPE,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tokenizer { cl100k_base, o200k_base }")
    }
}

impl Tokenizer {
    pub fn new() -> Result<Self, TokenizerError> {
        let cl100k = tiktoken_rs::cl100k_base().map_err(|e| TokenizerError {
            encoding: "cl100k_base",
            reason: e.to_string(),
        })?;
        let o200k = tiktoken_rs::o200k_base().map_err(|e| TokenizerError {
            encoding: "o200k_base",
            reason: e.to_string(),
        })?;
        Ok(Self { cl100k, o200k })
    }

    /// o200k_base for gpt-4o / gpt-4.1 / o1 / o3 / o4 families (and chatgpt-4o), cl100k_base
    /// otherwise.
    pub fn count(&self, model: &str, text: &str) -> u64 {
        text_tokens(self.encoding(model), text)
    }

    /// Prompt tokens of a request body per api.md: for chat (`messages`): 3 per message + tokens
    /// of each string field among role/content/name (content may also be an array of parts: the
    /// `text` of text parts counts) + 1 per name + 3 for the reply primer. For legacy completions
    /// (`prompt`) and embeddings (`input`): plain token counts, where arrays of token ids count
    /// their length. Malformed → 0.
    pub fn prompt_tokens(&self, model: &str, request_body: &[u8]) -> u64 {
        let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(request_body) else {
            return 0;
        };
        let bpe = self.encoding(model);
        if let Some(messages) = body.get("messages") {
            return chat_tokens(bpe, messages);
        }
        match body.get("prompt").or_else(|| body.get("input")) {
            Some(input) => input_tokens(bpe, input),
            None => 0,
        }
    }

    fn encoding(&self, model: &str) -> &CoreBPE {
        // Fine-tuned models are named "ft:<base>:<org>::<id>".
        let base = model.strip_prefix("ft:").unwrap_or(model);
        let family = |f: &&str| {
            base.strip_prefix(*f)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
        };
        if O200K_PREFIXES.iter().any(|p| base.starts_with(p)) || O200K_FAMILIES.iter().any(family) {
            &self.o200k
        } else {
            &self.cl100k
        }
    }
}

/// Ordinary encoding: text that looks like a special token is user text, not a control token.
fn text_tokens(bpe: &CoreBPE, text: &str) -> u64 {
    bpe.encode_ordinary(text).len() as u64
}

fn chat_tokens(bpe: &CoreBPE, messages: &Value) -> u64 {
    let Value::Array(messages) = messages else {
        return 0;
    };
    let per_message = messages.iter().filter_map(Value::as_object).map(|m| {
        let mut n = TOKENS_PER_MESSAGE;
        for key in ["role", "content", "name"] {
            n += match m.get(key) {
                Some(Value::String(s)) => text_tokens(bpe, s),
                Some(Value::Array(parts)) if key == "content" => parts_tokens(bpe, parts),
                _ => 0,
            };
        }
        if m.get("name").is_some_and(Value::is_string) {
            n += TOKENS_PER_NAME;
        }
        n
    });
    per_message.sum::<u64>() + REPLY_PRIMER
}

/// Text parts of a multi-part content array; images and audio are not estimated.
fn parts_tokens(bpe: &CoreBPE, parts: &[Value]) -> u64 {
    parts
        .iter()
        .filter(|p| p.get("type").and_then(Value::as_str).unwrap_or("text") == "text")
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .map(|t| text_tokens(bpe, t))
        .sum()
}

/// A `prompt`/`input`: a string, token ids, or an array of either.
fn input_tokens(bpe: &CoreBPE, input: &Value) -> u64 {
    match input {
        Value::String(s) => text_tokens(bpe, s),
        Value::Number(_) => 1,
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Array(ids) => ids.iter().filter(|id| id.is_number()).count() as u64,
                other => input_tokens(bpe, other),
            })
            .sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::LazyLock;

    static TOK: LazyLock<Tokenizer> = LazyLock::new(|| Tokenizer::new().unwrap());

    /// The example conversation from OpenAI's cookbook "How to count tokens with tiktoken"
    /// (openai/openai-cookbook, examples/How_to_count_tokens_with_tiktoken.ipynb, section 6).
    const COOKBOOK_MESSAGES: &str = r#"{"model":"x","messages":[
        {"role":"system","content":"You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
        {"role":"system","name":"example_user","content":"New synergies will help drive top-line growth."},
        {"role":"system","name":"example_assistant","content":"Things working well together will increase revenue."},
        {"role":"system","name":"example_user","content":"Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
        {"role":"system","name":"example_assistant","content":"Let's talk later when we're less busy about how to do better."},
        {"role":"user","content":"This late pivot means we don't have time to boil the ocean for the client deliverable."}
    ]}"#;

    #[test]
    fn cookbook_chat_counts() {
        // The cookbook prints 129 prompt tokens (num_tokens_from_messages and the API agree)
        // for gpt-3.5-turbo, gpt-4-0613 and gpt-4 (cl100k_base) ...
        for model in ["gpt-3.5-turbo", "gpt-35-turbo", "gpt-4-0613", "gpt-4"] {
            assert_eq!(
                TOK.prompt_tokens(model, COOKBOOK_MESSAGES.as_bytes()),
                129,
                "{model}"
            );
        }
        // ... and 124 for gpt-4o and gpt-4o-mini (o200k_base).
        for model in ["gpt-4o", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"] {
            assert_eq!(
                TOK.prompt_tokens(model, COOKBOOK_MESSAGES.as_bytes()),
                124,
                "{model}"
            );
        }
    }

    #[test]
    fn cookbook_string_counts() {
        // Cookbook sections 3 and 5: "tiktoken is great!" is 6 tokens in cl100k_base and in
        // o200k_base; "antidisestablishmentarianism" 6 in both; "2 + 2 = 4" 7 in both;
        // "お誕生日おめでとう" 9 in cl100k_base and 8 in o200k_base.
        for (text, cl100k, o200k) in [
            ("tiktoken is great!", 6, 6),
            ("antidisestablishmentarianism", 6, 6),
            ("2 + 2 = 4", 7, 7),
            ("お誕生日おめでとう", 9, 8),
        ] {
            assert_eq!(TOK.count("gpt-4", text), cl100k, "{text}");
            assert_eq!(TOK.count("gpt-4o", text), o200k, "{text}");
        }
        // The token ids the cookbook prints for "tiktoken is great!".
        assert_eq!(
            TOK.cl100k.encode_ordinary("tiktoken is great!"),
            [83, 1609, 5963, 374, 2294, 0]
        );
        assert_eq!(
            TOK.o200k.encode_ordinary("tiktoken is great!"),
            [83, 8251, 2488, 382, 2212, 0]
        );
    }

    #[test]
    fn encoding_choice() {
        let o200k = [
            "gpt-4o",
            "chatgpt-4o-latest",
            "gpt-4.1-mini",
            "o1",
            "o1-mini",
            "o3-mini",
            "o4-mini-2025-04-16",
            "ft:gpt-4o-mini:org::x",
        ];
        let cl100k = [
            "gpt-4",
            "gpt-4-turbo",
            "gpt-3.5-turbo",
            "text-embedding-3-small",
            "o10",
            "omni",
            "",
        ];
        // 2 + 2 = 4 tokenizes the same in both; this string does not.
        let text = "お誕生日おめでとう";
        assert!(o200k.iter().all(|m| TOK.count(m, text) == 8));
        assert!(cl100k.iter().all(|m| TOK.count(m, text) == 9));
        // Special-token lookalikes are plain text, never a panic or an error.
        assert!(TOK.count("gpt-4", "<|endoftext|>") > 1);
    }

    #[test]
    fn prompt_shapes() {
        let m = "gpt-3.5-turbo";
        let great = 6; // "tiktoken is great!"
        let parts = r#"{"messages":[{"role":"user","content":[{"type":"text","text":"tiktoken is great!"},{"type":"image_url","image_url":{"url":"data:x"}}]}]}"#;
        let user = TOK.count(m, "user");
        assert_eq!(TOK.prompt_tokens(m, parts.as_bytes()), 3 + user + great + 3);
        let null_content = r#"{"messages":[{"role":"assistant","content":null}]}"#;
        assert_eq!(
            TOK.prompt_tokens(m, null_content.as_bytes()),
            3 + TOK.count(m, "assistant") + 3
        );
        let prompt = r#"{"prompt":["tiktoken is great!","tiktoken is great!"]}"#;
        assert_eq!(TOK.prompt_tokens(m, prompt.as_bytes()), 2 * great);
        assert_eq!(
            TOK.prompt_tokens(m, br#"{"input":"tiktoken is great!"}"#),
            great
        );
        assert_eq!(TOK.prompt_tokens(m, br#"{"input":[1,2,3]}"#), 3);
        assert_eq!(TOK.prompt_tokens(m, br#"{"input":[[1,2],[3]]}"#), 3);
        for bad in [
            &b"nope"[..],
            b"[]",
            br#"{"messages":"x"}"#,
            br#"{"model":"m"}"#,
            b"",
        ] {
            assert_eq!(TOK.prompt_tokens(m, bad), 0);
        }
    }
}
