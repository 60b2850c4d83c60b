//! The detail report's shape, shared by `/1/usages/detail` and `catgate report`: parsing
//! `group_by` and `format`, and rendering rows as JSON, CSV or an aligned table with exactly
//! api.md's field names, in its order (only the grouped identity fields appear).

use rust_decimal::{Decimal, RoundingStrategy};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use crate::store::report::{Dimension, ReportRow};

/// The default grouping.
pub const DEFAULT_GROUP_BY: [Dimension; 2] = [Dimension::User, Dimension::Model];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Table,
}

impl Format {
    /// `json` or `csv` (`table` too when `table_ok`, for the CLI).
    pub fn parse(text: &str, table_ok: bool) -> Result<Format, String> {
        match text {
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            "table" if table_ok => Ok(Format::Table),
            other => Err(format!(
                "unknown format `{other}`; use {}",
                if table_ok {
                    "table, csv or json"
                } else {
                    "json or csv"
                }
            )),
        }
    }
}

/// A comma list of `user`, `model`, `key`, `day`, `tier`, each at most once.
pub fn parse_group_by(text: &str) -> Result<Vec<Dimension>, String> {
    let mut dims = Vec::new();
    for word in text.split(',').map(str::trim) {
        let dim = Dimension::parse(word).ok_or_else(|| {
            format!("unknown group_by `{word}`; use a comma list of user, model, key, day, tier")
        })?;
        if dims.contains(&dim) {
            return Err(format!("group_by names `{word}` twice"));
        }
        dims.push(dim);
    }
    Ok(dims)
}

/// Exactly 6 decimals, half-up.
pub fn money(cost: Decimal) -> String {
    let mut rounded = cost.round_dp_with_strategy(6, RoundingStrategy::MidpointAwayFromZero);
    rounded.rescale(6);
    rounded.to_string()
}

/// One value of a rendered row.
enum Cell {
    Int(i64),
    Text(String),
    Null,
}

impl Cell {
    fn text(&self) -> String {
        match self {
            Cell::Int(i) => i.to_string(),
            Cell::Text(t) => t.clone(),
            Cell::Null => String::new(),
        }
    }
}

/// The row as (field name, value) pairs in api.md's order.
fn cells(row: &ReportRow) -> Vec<(&'static str, Cell)> {
    let mut out = Vec::with_capacity(20);
    let opt_text = |t: &Option<String>| t.clone().map_or(Cell::Null, Cell::Text);
    if let Some((id, name)) = &row.user {
        out.push(("userId", Cell::Int(*id)));
        out.push(("userName", Cell::Text(name.clone())));
    }
    if let Some(model) = &row.model {
        out.push(("model", Cell::Text(model.clone())));
    }
    if let Some((id, name)) = &row.key {
        out.push(("keyId", id.map_or(Cell::Null, Cell::Int)));
        out.push(("keyName", opt_text(name)));
    }
    if let Some(day) = &row.day {
        out.push(("day", Cell::Text(day.clone())));
    }
    if let Some(tier) = &row.tier {
        out.push(("tier", Cell::Text(tier.clone())));
    }
    let counts = [
        ("requests", row.requests),
        ("promptTokens", row.prompt_tokens),
        ("cachedTokens", row.cached_tokens),
        ("cacheWriteTokens", row.cache_write_tokens),
        ("completionTokens", row.completion_tokens),
        ("reasoningTokens", row.reasoning_tokens),
        ("audioInputTokens", row.audio_input_tokens),
        ("audioOutputTokens", row.audio_output_tokens),
        ("totalTokens", row.total_tokens),
    ];
    out.extend(counts.map(|(name, v)| (name, Cell::Int(v))));
    out.push(("cost", Cell::Text(money(row.cost))));
    out.push(("estimatedRequests", Cell::Int(row.estimated_requests)));
    out.push(("unpricedRequests", Cell::Int(row.unpriced_requests)));
    out.push(("failedRequests", Cell::Int(row.failed_requests)));
    out
}

/// The field names of a report grouped by `dims`, in order.
pub fn header(dims: &[Dimension]) -> Vec<&'static str> {
    let probe = ReportRow {
        user: dims.contains(&Dimension::User).then(|| (0, String::new())),
        model: dims.contains(&Dimension::Model).then(String::new),
        key: dims.contains(&Dimension::Key).then_some((None, None)),
        day: dims.contains(&Dimension::Day).then(String::new),
        tier: dims.contains(&Dimension::Tier).then(String::new),
        ..ReportRow::default()
    };
    cells(&probe).into_iter().map(|(name, _)| name).collect()
}

struct JsonRows<'a>(&'a [ReportRow]);

impl Serialize for JsonRows<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for row in self.0 {
            seq.serialize_element(&JsonRow(row))?;
        }
        seq.end()
    }
}

struct JsonRow<'a>(&'a ReportRow);

impl Serialize for JsonRow<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let cells = cells(self.0);
        let mut map = s.serialize_map(Some(cells.len()))?;
        for (name, cell) in &cells {
            match cell {
                Cell::Int(i) => map.serialize_entry(name, i)?,
                Cell::Text(t) => map.serialize_entry(name, t)?,
                Cell::Null => map.serialize_entry(name, &())?,
            }
        }
        map.end()
    }
}

/// The rows as a JSON array of objects.
pub fn to_json(rows: &[ReportRow]) -> Vec<u8> {
    serde_json::to_vec(&JsonRows(rows)).unwrap_or_else(|_| b"[]".to_vec())
}

/// RFC 4180: a field with a comma, quote or line break is quoted, quotes doubled.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// The rows as CSV with a header row (CRLF line ends, as RFC 4180 has them).
pub fn to_csv(rows: &[ReportRow], dims: &[Dimension]) -> String {
    let mut out = header(dims).join(",");
    out.push_str("\r\n");
    for row in rows {
        let line: Vec<String> = cells(row)
            .iter()
            .map(|(_, c)| csv_field(&c.text()))
            .collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

/// The rows as an aligned text table: text left-aligned, numbers right-aligned.
pub fn to_table(rows: &[ReportRow], dims: &[Dimension]) -> String {
    let names = header(dims);
    let body: Vec<Vec<(String, bool)>> = rows
        .iter()
        .map(|r| {
            cells(r)
                .into_iter()
                .map(|(name, c)| {
                    let numeric = matches!(c, Cell::Int(_)) || name == "cost";
                    (c.text(), numeric)
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            body.iter()
                .map(|r| r[i].0.chars().count())
                .chain([n.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let head: Vec<String> = names
        .iter()
        .zip(&widths)
        .map(|(n, w)| format!("{n:<w$}"))
        .collect();
    out.push_str(head.join("  ").trim_end());
    out.push('\n');
    for row in &body {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|((t, numeric), w)| match numeric {
                true => format!("{t:>w$}"),
                false => format!("{t:<w$}"),
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> ReportRow {
        ReportRow {
            user: Some((2, "alice, \"the\" admin".into())),
            model: Some("gpt-5".into()),
            key: Some((None, None)),
            requests: 3,
            total_tokens: 30,
            cost: "0.0000005".parse().unwrap(),
            ..ReportRow::default()
        }
    }

    #[test]
    fn group_by_is_strict() {
        assert_eq!(
            parse_group_by("day, key").unwrap(),
            [Dimension::Day, Dimension::Key]
        );
        assert!(parse_group_by("user,user").is_err());
        assert!(parse_group_by("users").is_err());
        assert!(parse_group_by("").is_err());
        assert!(Format::parse("table", false).is_err());
        assert_eq!(Format::parse("table", true), Ok(Format::Table));
    }

    #[test]
    fn json_keeps_api_order_and_only_grouped_fields() {
        let json = String::from_utf8(to_json(&[row()])).unwrap();
        assert!(json.starts_with(r#"[{"userId":2,"userName":"alice, \"the\" admin","model":"gpt-5","keyId":null,"keyName":null,"requests":3,"promptTokens":0,"#), "{json}");
        assert!(json.ends_with(r#""totalTokens":30,"cost":"0.000001","estimatedRequests":0,"unpricedRequests":0,"failedRequests":0}]"#), "{json}");
    }

    #[test]
    fn csv_quotes_and_header_match() {
        let dims = [Dimension::User, Dimension::Model, Dimension::Key];
        let csv = to_csv(&[row()], &dims);
        let mut lines = csv.split("\r\n");
        assert_eq!(lines.next().unwrap(), "userId,userName,model,keyId,keyName,requests,promptTokens,cachedTokens,cacheWriteTokens,completionTokens,reasoningTokens,audioInputTokens,audioOutputTokens,totalTokens,cost,estimatedRequests,unpricedRequests,failedRequests");
        assert_eq!(
            lines.next().unwrap(),
            "2,\"alice, \"\"the\"\" admin\",gpt-5,,,3,0,0,0,0,0,0,0,30,0.000001,0,0,0"
        );
    }

    #[test]
    fn table_is_aligned() {
        let t = to_table(
            &[row()],
            &[Dimension::User, Dimension::Model, Dimension::Key],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        let cost_at = lines[0].find("cost").unwrap();
        assert_eq!(&lines[1][cost_at..cost_at + 8], "0.000001");
    }
}
