use super::*;
use std::str::FromStr;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn builtin() -> PriceTable {
    PriceTable::builtin().unwrap()
}

fn matched(table: &PriceTable, model: &str) -> Option<String> {
    table.lookup(model).map(|(name, _)| name.to_string())
}

fn usage(prompt: u64, cached: u64, completion: u64, reasoning: u64) -> Usage {
    Usage {
        cached_tokens: cached,
        reasoning_tokens: reasoning,
        ..Usage::plain(prompt, completion)
    }
}

fn cost(t: &PriceTable, model: &str, tier: Option<&str>, u: &Usage) -> String {
    t.cost(model, tier, u).unwrap().to_string()
}

/// A one-model table parsed from TOML, as a config entry would be.
fn table(toml_text: &str) -> PriceTable {
    let doc: toml::Table = toml::from_str(toml_text).unwrap();
    let models = doc["models"].as_table().unwrap();
    PriceTable::from_entries(parse_models(models, "models").unwrap())
}

#[test]
fn shipped_table_has_todays_models_at_list_price() {
    let t = builtin();
    // (model, input, cached_input, output) in USD per 1M tokens, from OpenAI's pricing page.
    for (model, input, cached, output) in [
        ("gpt-5", "1.25", "0.125", "10"),
        ("gpt-5-mini", "0.25", "0.025", "2"),
        ("gpt-5-nano", "0.05", "0.005", "0.4"),
        ("gpt-4.1", "2", "0.5", "8"),
        ("gpt-4.1-mini", "0.4", "0.1", "1.6"),
        ("gpt-4.1-nano", "0.1", "0.025", "0.4"),
        ("gpt-4o", "2.5", "1.25", "10"),
        ("gpt-4o-mini", "0.15", "0.075", "0.6"),
        ("o1", "15", "7.5", "60"),
        ("o3", "2", "0.5", "8"),
        ("o3-mini", "1.1", "0.55", "4.4"),
        ("o4-mini", "1.1", "0.275", "4.4"),
        ("gpt-3.5-turbo", "0.5", "0.5", "1.5"),
        ("gpt-4", "30", "30", "60"),
        ("gpt-4-turbo", "10", "10", "30"),
        ("text-embedding-3-small", "0.02", "0.02", "0"),
        ("text-embedding-3-large", "0.13", "0.13", "0"),
        ("text-embedding-ada-002", "0.1", "0.1", "0"),
    ] {
        let (name, p) = t.lookup(model).unwrap();
        assert_eq!(name, model);
        let got = (p.standard.input, p.standard.cached_input, p.standard.output);
        assert_eq!(got, (d(input), d(cached), d(output)), "{model}");
    }
    assert!(BUILTIN.contains("as_of = \""), "the table states its date");
}

#[test]
fn cost_formula_every_column_hand_computed() {
    let t = builtin();
    // gpt-5: 500 uncached × 1.25 + 1500 cached × 0.125 + 300 out × 10 = 625 + 187.5 + 3000
    //   = 3812.5 per 1M → 0.0038125. Reasoning is part of the 300 output tokens.
    let u = usage(2000, 1500, 300, 256);
    assert_eq!(cost(&t, "gpt-5-2025-08-07", None, &u), "0.0038125");
    for standard in ["default", "auto", ""] {
        assert_eq!(cost(&t, "gpt-5", Some(standard), &u), "0.0038125");
    }
    // gpt-4o-audio-preview: 1100 text in × 2.5 + 100 audio in × 40 + 100 text out × 10
    //   + 300 audio out × 80 = 2750 + 4000 + 1000 + 24000 = 31750 → 0.03175.
    let audio = Usage {
        audio_input_tokens: 100,
        audio_output_tokens: 300,
        ..Usage::plain(1200, 400)
    };
    assert_eq!(cost(&t, "gpt-4o-audio-preview", None, &audio), "0.03175");
    // Cache writes have their own price: 2000 × 3 + 6000 × 0.3 + 2000 × 3.75 + 500 × 15
    //   = 6000 + 1800 + 7500 + 7500 = 22800 → 0.0228.
    let t2 = table(
        "[models.m]\ninput = \"3\"\ncached_input = \"0.3\"\ncache_write = \"3.75\"\noutput = \"15\"",
    );
    let writes = Usage {
        cache_write_tokens: 2000,
        ..usage(10_000, 6000, 500, 0)
    };
    assert_eq!(cost(&t2, "m", None, &writes), "0.0228");
    // Missing cached_input/cache_write fall back to input: gpt-4 50 × 30 + 50 × 30 + 10 × 60
    //   = 3600 → 0.0036.
    assert_eq!(
        cost(&t, "gpt-4-0613", None, &usage(100, 50, 10, 0)),
        "0.0036"
    );
    assert_eq!(
        t.cost("gpt-4", None, &Usage::default()),
        Some(Decimal::ZERO)
    );
}

#[test]
fn service_tiers_use_their_table_else_the_multiplier() {
    let t = builtin();
    let u = usage(2000, 1500, 300, 256);
    // gpt-5 priority table: 500 × 2.5 + 1500 × 0.25 + 300 × 20 = 1250 + 375 + 6000 → 0.007625.
    assert_eq!(cost(&t, "gpt-5", Some("priority"), &u), "0.007625");
    // gpt-5 flex table: 500 × 0.625 + 1500 × 0.0625 + 300 × 5 = 312.5 + 93.75 + 1500
    //   → 0.00190625.
    assert_eq!(cost(&t, "gpt-5", Some("flex"), &u), "0.00190625");
    // gpt-5-nano has no priority table: standard (1000 × 0.05 + 100 × 0.4 = 90 → 0.00009)
    //   times the default multiplier 2.
    let nano = usage(1000, 0, 100, 0);
    assert_eq!(cost(&t, "gpt-5-nano", Some("priority"), &nano), "0.00018");
    // An unknown tier name (scale) is billed at standard prices.
    assert_eq!(cost(&t, "gpt-5-nano", Some("scale"), &nano), "0.00009");
    let mut custom = builtin();
    custom.set_tier_multiplier("priority".into(), d("1.5"));
    assert_eq!(
        cost(&custom, "gpt-5-nano", Some("priority"), &nano),
        "0.000135"
    );
}

#[test]
fn per_request_prices_and_scales_with_the_tier() {
    let t = table("[models.img]\ninput = \"0\"\noutput = \"0\"\nper_request = \"0.04\"");
    assert_eq!(cost(&t, "img", None, &Usage::default()), "0.04");
    assert_eq!(cost(&t, "img", Some("flex"), &Usage::default()), "0.02");
}

#[test]
fn details_beyond_their_parent_are_clamped_before_pricing() {
    let t = builtin();
    // 5000 cached of a 1000-token prompt → 1000 cached × 0.075 + 10 × 0.6 = 81 → 0.000081.
    assert_eq!(
        cost(&t, "gpt-4o-mini", None, &usage(1000, 5000, 10, 0)),
        "0.000081"
    );
    // Never negative, never a panic, even at u64::MAX.
    let huge = Usage {
        audio_output_tokens: u64::MAX,
        ..usage(u64::MAX, u64::MAX, u64::MAX, u64::MAX)
    };
    if let Some(c) = t.cost("gpt-4", None, &huge) {
        assert!(!c.is_sign_negative());
    }
}

#[test]
fn unknown_models_have_no_cost() {
    let t = builtin();
    for model in [
        "claude-3",
        "gpt-3",
        "",
        "dall-e-3",
        "gpt-image-1",
        "whisper-1",
    ] {
        assert_eq!(t.cost(model, None, &usage(10, 0, 10, 0)), None, "{model}");
    }
}

#[test]
fn longest_prefix_and_azure_names() {
    let t = builtin();
    for (model, want) in [
        ("gpt-5-2025-08-07", Some("gpt-5")),
        ("gpt-5-mini-2025-08-07", Some("gpt-5-mini")),
        ("gpt-5-nano-2025-08-07", Some("gpt-5-nano")),
        ("gpt-5-pro-2025-10-06", Some("gpt-5-pro")),
        ("gpt-4.1-2025-04-14", Some("gpt-4.1")),
        ("gpt-4.1-mini-2025-04-14", Some("gpt-4.1-mini")),
        ("gpt-4o-mini-2024-07-18", Some("gpt-4o-mini")),
        ("gpt-4o-2024-08-06", Some("gpt-4o")),
        ("gpt-4o-2024-05-13", Some("gpt-4o-2024-05-13")),
        ("gpt-4-0613", Some("gpt-4")),
        ("gpt-4-32k-0613", Some("gpt-4-32k")),
        ("gpt-4-turbo-2024-04-09", Some("gpt-4-turbo")),
        ("gpt-4-1106-preview", Some("gpt-4-1106-preview")),
        ("o1-mini-2024-09-12", Some("o1-mini")),
        ("o1-2024-12-17", Some("o1")),
        ("o1-pro-2025-03-19", Some("o1-pro")),
        ("o3-2025-04-16", Some("o3")),
        ("o3-mini-2025-01-31", Some("o3-mini")),
        ("o4-mini-2025-04-16", Some("o4-mini")),
        ("gpt-35-turbo", Some("gpt-3.5-turbo")),
        ("gpt-35-turbo-16k", Some("gpt-3.5-turbo-16k")),
        ("gpt-35-turbo-0125", Some("gpt-3.5-turbo-0125")),
        ("gpt-3.5-turbo-0125", Some("gpt-3.5-turbo-0125")),
        ("text-embedding-3-small", Some("text-embedding-3-small")),
        ("omni-moderation-latest", Some("omni-moderation")),
        ("claude-3", None),
        ("gpt-3", None),
        ("", None),
    ] {
        assert_eq!(matched(&t, model).as_deref(), want, "{model}");
    }
}

#[test]
fn config_entries_replace_and_extend() {
    let mut t = builtin();
    let custom = table("[models.\"gpt-4o\"]\ninput = \"5\"\noutput = \"15\"");
    let (_, p) = custom.lookup("gpt-4o").unwrap();
    t.insert("gpt-4o".into(), p.clone());
    // Replaced whole: no cached price of the built-in entry survives.
    let (_, got) = t.lookup("gpt-4o-2024-11-20").unwrap();
    assert_eq!(got.standard, Rates::flat(d("5"), d("15")));
    assert!(got.tiers.is_empty());
    assert_eq!(
        matched(&t, "gpt-4o-2024-05-13").as_deref(),
        Some("gpt-4o-2024-05-13")
    );
}

#[test]
fn bad_entries_name_their_key() {
    let doc = |text: &str| -> toml::Table { toml::from_str(text).unwrap() };
    let err = |text: &str| {
        let d = doc(text);
        parse_models(d["models"].as_table().unwrap(), "pricing.models")
            .unwrap_err()
            .key
    };
    assert_eq!(
        err("[models.m]\ninput = \"1\""),
        "pricing.models.\"m\".output"
    );
    assert_eq!(
        err("[models.m]\ninput = 0.1\noutput = \"1\""),
        "pricing.models.\"m\".input"
    );
    assert_eq!(
        err("[models.m]\ninput = \"-1\"\noutput = \"1\""),
        "pricing.models.\"m\".input"
    );
    assert_eq!(
        err("[models.m]\ninput = \"1\"\noutput = \"1\"\ncached = \"1\""),
        "pricing.models.\"m\".cached"
    );
    assert_eq!(
        err("[models.m]\ninput = \"1\"\noutput = \"1\"\n[models.m.flex]\ninput = \"1\""),
        "pricing.models.\"m\".flex.output"
    );
}

#[test]
fn canonical_names() {
    assert_eq!(canonical_model("gpt-35-turbo"), "gpt-3.5-turbo");
    assert_eq!(canonical_model("gpt-35-turbo-16k"), "gpt-3.5-turbo-16k");
    assert_eq!(
        canonical_model("gpt-35-turbo-instruct"),
        "gpt-3.5-turbo-instruct"
    );
    assert!(matches!(canonical_model("gpt-4o"), Cow::Borrowed("gpt-4o")));
    assert!(matches!(canonical_model("gpt-350"), Cow::Borrowed(_)));
}
