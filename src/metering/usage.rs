//! Token usage: the [`Usage`] counts of one request and the rules that keep them billable.
//! Details larger than their parent are cut down by [`Usage::clamped`] (pricing subtracts the
//! prompt parts from the prompt); [`Usage::largest_count`] feeds the plausibility bound.
//! Reading usage off the wire is `usage_wire.rs`; finding it in an answer is `answer_scan.rs`.

/// Token counts of one request, in api.md's column names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: u64,
    /// Part of prompt: read from the prompt cache.
    pub cached_tokens: u64,
    /// Part of prompt: written to the prompt cache.
    pub cache_write_tokens: u64,
    /// Part of prompt: audio input.
    pub audio_input_tokens: u64,
    pub completion_tokens: u64,
    /// Part of completion: hidden reasoning (priced as output).
    pub reasoning_tokens: u64,
    /// Part of completion: audio output.
    pub audio_output_tokens: u64,
    pub total_tokens: u64,
    /// A detail was negative, fractional or not a number and was read as 0.
    pub suspect: bool,
}

impl Usage {
    /// Prompt and completion only (what a tokenizer estimate or an old record knows).
    pub fn plain(prompt_tokens: u64, completion_tokens: u64) -> Usage {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
            ..Usage::default()
        }
    }

    /// The details cut to fit their parent: cached, then cache writes, then audio within the
    /// prompt; audio output and reasoning each within the completion. Pricing subtracts the
    /// prompt parts from the prompt, so they must never add up to more than it.
    pub fn clamped(&self) -> Usage {
        let mut u = *self;
        let mut prompt_left = u.prompt_tokens;
        for part in [
            &mut u.cached_tokens,
            &mut u.cache_write_tokens,
            &mut u.audio_input_tokens,
        ] {
            *part = (*part).min(prompt_left);
            prompt_left -= *part;
        }
        u.audio_output_tokens = u.audio_output_tokens.min(u.completion_tokens);
        u.reasoning_tokens = u.reasoning_tokens.min(u.completion_tokens);
        u
    }

    /// Whether the upstream's details did not fit (or were not numbers): worth a log line.
    pub fn was_inconsistent(&self) -> bool {
        self.suspect || self.clamped() != *self
    }

    /// The largest top-level count, for the plausibility bound.
    pub fn largest_count(&self) -> u64 {
        self.prompt_tokens
            .max(self.completion_tokens)
            .max(self.total_tokens)
    }

    pub fn is_zero(&self) -> bool {
        self.prompt_tokens == 0 && self.completion_tokens == 0 && self.total_tokens == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_larger_than_their_parent_are_clamped() {
        let raw = Usage {
            prompt_tokens: 100,
            cached_tokens: 80,
            cache_write_tokens: 30,
            audio_input_tokens: 500,
            completion_tokens: 10,
            reasoning_tokens: 50,
            audio_output_tokens: 11,
            total_tokens: 110,
            suspect: false,
        };
        let c = raw.clamped();
        assert_eq!(
            (c.cached_tokens, c.cache_write_tokens, c.audio_input_tokens),
            (80, 20, 0)
        );
        assert_eq!((c.reasoning_tokens, c.audio_output_tokens), (10, 10));
        assert!(raw.was_inconsistent());
        assert!(!c.was_inconsistent());
        assert_eq!(raw.largest_count(), 110);
    }
}
