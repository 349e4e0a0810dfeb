//! The HELP text of every metric, read from `docs/metrics.md` (compiled in), so that
//! what `/metrics` says of a metric and what the documentation says are one text. A
//! test in the suite keeps every metric of the code in that file; here each table
//! row `| name | type | labels | what |` becomes a description of its type.

/// The documentation the descriptions come from.
const METRICS_MD: &str = include_str!("../../docs/metrics.md");

/// One documented metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Documented {
    /// Its full name.
    pub name: String,
    /// `counter`, `gauge` or `histogram`.
    pub kind: String,
    /// What it counts or measures, as plain text.
    pub help: String,
}

/// Every metric `docs/metrics.md` documents, in its order.
pub fn documented() -> Vec<Documented> {
    METRICS_MD.lines().filter_map(row).collect()
}

/// Gives every documented metric its HELP text (and a duration its unit).
pub fn describe_all() {
    for metric in documented() {
        let unit = metric
            .name
            .ends_with("_seconds")
            .then_some(metrics::Unit::Seconds);
        match (metric.kind.as_str(), unit) {
            ("counter", _) => metrics::describe_counter!(metric.name, metric.help),
            ("gauge", Some(unit)) => metrics::describe_gauge!(metric.name, unit, metric.help),
            ("gauge", None) => metrics::describe_gauge!(metric.name, metric.help),
            ("histogram", Some(unit)) => {
                metrics::describe_histogram!(metric.name, unit, metric.help)
            }
            _ => metrics::describe_histogram!(metric.name, metric.help),
        }
    }
}

/// A metric's table row, or `None` for any other line.
fn row(line: &str) -> Option<Documented> {
    let cells: Vec<&str> = line
        .trim()
        .strip_prefix('|')?
        .split('|')
        .map(str::trim)
        .collect();
    let [name, kind, _labels, what, ..] = cells.as_slice() else {
        return None;
    };
    let name = name.strip_prefix('`')?.strip_suffix('`')?;
    if !name.starts_with("kaizala_bridge_") {
        return None;
    }
    Some(Documented {
        name: name.to_string(),
        kind: kind.to_string(),
        help: plain(what),
    })
}

/// Markdown as plain text: code marks dropped, a link shown by its text.
fn plain(markdown: &str) -> String {
    let mut text = String::with_capacity(markdown.len());
    let mut rest = markdown;
    while let Some(open) = rest.find('[') {
        let Some(link) = rest[open..].find("](").map(|at| open + at) else {
            break;
        };
        let Some(close) = rest[link..].find(')').map(|at| link + at) else {
            break;
        };
        text.push_str(&rest[..open]);
        text.push_str(&rest[open + 1..link]);
        rest = &rest[close + 1..];
    }
    text.push_str(rest);
    text.replace('`', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_metric_has_a_type_and_a_help_text() {
        let all = documented();
        assert!(all.len() >= 30, "{all:?}");
        for metric in &all {
            assert!(
                ["counter", "gauge", "histogram"].contains(&metric.kind.as_str()),
                "{metric:?}"
            );
            assert!(metric.help.len() > 10, "{metric:?}");
            assert!(
                !metric.help.contains('`') && !metric.help.contains("]("),
                "{metric:?}"
            );
        }
        let ready = all
            .iter()
            .find(|m| m.name == "kaizala_bridge_ready")
            .unwrap();
        assert_eq!(ready.kind, "gauge");
    }

    #[test]
    fn links_show_their_text() {
        assert_eq!(
            plain("probing: see [security.md](security.md) and `x`"),
            "probing: see security.md and x"
        );
    }
}
