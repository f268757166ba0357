//! Checks what runs Warden's monitoring beyond one machine (`ops/`): the Prometheus
//! rules pass `promtool check rules` and their unit tests (`promtool test rules`),
//! and the Grafana dashboard is valid JSON whose panels show memory, traffic, errors
//! and latency with valid PromQL over metrics that exist.
//!
//! promtool comes from Debian's `prometheus` package (`scripts/test` installs it).
//! Without it these tests fail, unless WARDEN_TEST_ALLOW_SKIP=1 is set outside CI,
//! in which case the promtool checks are skipped with a note.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../ops/prometheus/warden-rules.yml"
);
const RULE_TESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../ops/prometheus/tests");
const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../ops/grafana/warden-dashboard.json"
);

/// The series a Warden API instance exposes on /metrics, plus the ones Prometheus
/// makes itself. Recording rules are added from the rules file.
const EXPOSED: &[&str] = &[
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "warden_heap_bytes",
    "warden_memory_limit_bytes",
    "warden_build_info",
    "http_server_request_duration_seconds_bucket",
    "http_server_request_duration_seconds_sum",
    "http_server_request_duration_seconds_count",
    "http_server_active_requests",
    "up",
    "ALERTS",
];

/// Runs promtool with `args`, or returns `None` when promtool is missing and
/// skipping is allowed (WARDEN_TEST_ALLOW_SKIP=1, never under CI=true).
fn promtool(args: &[&str]) -> Option<Output> {
    match Command::new("promtool").args(args).output() {
        Ok(out) => Some(out),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true");
            let allow_skip = std::env::var("WARDEN_TEST_ALLOW_SKIP").is_ok_and(|v| v == "1");
            if ci || !allow_skip {
                panic!(
                    "promtool is not installed (Debian package `prometheus`); \
                     install it, or set WARDEN_TEST_ALLOW_SKIP=1 outside CI to skip this check"
                );
            }
            eprintln!(
                "skipping `promtool {}`: promtool is not installed",
                args.join(" ")
            );
            None
        }
        Err(error) => panic!("could not run promtool: {error}"),
    }
}

fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// The promtool unit-test files, sorted.
fn rule_test_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(RULE_TESTS)
        .unwrap_or_else(|e| panic!("cannot list {RULE_TESTS}: {e}"))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    files
}

/// The values of `key: value` lines in a YAML file (enough for `record:`,
/// `alert:` and `alertname:`, which are always plain scalars here).
fn yaml_values(text: &str, key: &str) -> BTreeSet<String> {
    let prefix = format!("{key}:");
    text.lines()
        .map(|line| line.trim_start().trim_start_matches("- "))
        .filter_map(|line| line.strip_prefix(&prefix))
        .map(|value| value.trim().trim_matches(['"', '\'']).to_owned())
        .filter(|value| !value.is_empty())
        .collect()
}

#[test]
fn rules_pass_promtool_check() {
    if let Some(out) = promtool(&["check", "rules", RULES]) {
        assert_success("promtool check rules ops/prometheus/warden-rules.yml", &out);
    }
}

#[test]
fn rule_unit_tests_pass() {
    let files = rule_test_files();
    assert!(!files.is_empty(), "no promtool tests in {RULE_TESTS}");
    let mut args = vec!["test", "rules"];
    args.extend(files.iter().map(|p| p.to_str().expect("UTF-8 path")));
    if let Some(out) = promtool(&args) {
        assert_success("promtool test rules ops/prometheus/tests/*.yml", &out);
    }
}

#[test]
fn every_alert_has_unit_tests() {
    // The names of Warden's own rules, and no other.
    let alerts = yaml_values(&read(RULES), "alert");
    let own: BTreeSet<String> = warden_monitor::rules::ALERTS
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
    assert_eq!(alerts, own, "the alerts of {RULES}");
    let tested: BTreeSet<String> = rule_test_files()
        .iter()
        .flat_map(|p| yaml_values(&std::fs::read_to_string(p).unwrap(), "alertname"))
        .collect();
    let untested: Vec<&String> = alerts.difference(&tested).collect();
    assert!(
        untested.is_empty(),
        "alerts without promtool tests: {untested:?}"
    );
}

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).expect("ops/grafana/warden-dashboard.json is not JSON")
}

/// Every panel, including those nested in rows.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

fn panel_exprs(panel: &Value) -> Vec<&str> {
    panel["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["expr"].as_str())
        .collect()
}

/// Every PromQL expression in the dashboard: panel targets, annotations, and the
/// selectors inside `label_values(...)` variable queries.
fn all_exprs(dashboard: &Value) -> Vec<String> {
    let mut exprs: Vec<String> = panels(dashboard)
        .into_iter()
        .flat_map(panel_exprs)
        .map(str::to_owned)
        .collect();
    for annotation in dashboard["annotations"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(expr) = annotation["expr"].as_str() {
            exprs.push(expr.to_owned());
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] != "query" {
            continue;
        }
        let query = variable["query"]["query"]
            .as_str()
            .or_else(|| variable["query"].as_str())
            .unwrap_or_else(|| panic!("variable {} has no query", variable["name"]));
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|rest| rest.rsplit_once(','))
            .map(|(selector, _label)| selector.trim())
            .unwrap_or_else(|| panic!("expected label_values(SELECTOR, LABEL), got {query}"));
        exprs.push(inner.to_owned());
    }
    exprs
}

#[test]
fn dashboard_has_the_panels_variables_and_annotations() {
    let d = dashboard();
    let schema = d["schemaVersion"].as_u64().expect("schemaVersion");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    assert!(d["uid"].is_string() && d["title"].is_string());

    let variables: Vec<&Value> = d["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .collect();
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} variable"))
    };
    let ds = variable("DS_PROMETHEUS");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    for name in ["release", "instance"] {
        let v = variable(name);
        assert_eq!(v["type"], "query", "${name}");
        assert_eq!(v["datasource"]["uid"], "${DS_PROMETHEUS}", "${name}");
    }

    // The five kinds of panel, recognised by what they query.
    let panels = panels(&d);
    let kinds: [(&str, &[&str]); 5] = [
        ("RSS", &["process_resident_memory_bytes"]),
        ("heap allocated", &["warden_heap_bytes{kind=\"allocated\""]),
        ("request rate", &["warden:http_requests:rate5m"]),
        ("5xx ratio", &["warden:http_5xx:ratio5m"]),
        (
            "p50/p99 latency",
            &[
                "warden:http_request_duration_seconds:p50_5m",
                "warden:http_request_duration_seconds:p99_5m",
            ],
        ),
    ];
    for (kind, needles) in kinds {
        let found = panels.iter().any(|p| {
            let exprs = panel_exprs(p);
            needles.iter().all(|n| exprs.iter().any(|e| e.contains(n)))
        });
        assert!(found, "no {kind} panel (one querying {needles:?})");
    }

    // Every query panel reads the templated data source and honours $release and
    // $instance, so it shows what the variables select, per release and instance.
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let title = &panel["title"];
        assert_eq!(
            panel["datasource"]["uid"], "${DS_PROMETHEUS}",
            "panel {title}"
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title} has no query");
        for target in targets {
            assert_eq!(
                target["datasource"]["uid"], "${DS_PROMETHEUS}",
                "panel {title}"
            );
            let expr = target["expr"].as_str().expect("expr");
            for needle in ["release=~\"$release\"", "instance=~\"$instance\""] {
                assert!(
                    expr.contains(needle),
                    "panel {title}: {expr} lacks {needle}"
                );
            }
        }
    }
    let mut ids: Vec<u64> = panels.iter().filter_map(|p| p["id"].as_u64()).collect();
    let count = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), count, "panel ids must be unique");

    // Firing alerts are marked on every graph.
    let annotations = d["annotations"]["list"].as_array().expect("annotations");
    assert!(
        annotations.iter().any(|a| {
            a["datasource"]["uid"] == "${DS_PROMETHEUS}"
                && a["expr"].as_str().is_some_and(|e| e.contains("ALERTS{"))
        }),
        "no annotation from the ALERTS series"
    );
}

#[test]
fn dashboard_queries_use_only_known_metrics() {
    let mut known: BTreeSet<String> = EXPOSED.iter().map(|s| (*s).to_owned()).collect();
    let recorded = yaml_values(&read(RULES), "record");
    assert!(!recorded.is_empty(), "no recording rules found in {RULES}");
    known.extend(recorded);

    let d = dashboard();
    let exprs = all_exprs(&d);
    assert!(exprs.len() >= 8, "too few expressions found: {exprs:?}");
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "no metric found in {expr}");
        for name in names {
            assert!(
                known.contains(&name),
                "dashboard expression `{expr}` uses `{name}`, which is neither exposed by \
                 Warden nor recorded in ops/prometheus/warden-rules.yml"
            );
        }
    }
}

#[test]
fn dashboard_queries_are_valid_promql() {
    // Grafana's variables, replaced by what Grafana would send, then each expression
    // checked by Prometheus' own parser as a recording rule.
    let d = dashboard();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in all_exprs(&d).iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "1m")
            .replace("$__interval", "1m")
            .replace("$__range", "6h")
            .replace("$release", "r1|r2")
            .replace("$instance", ".*");
        assert!(!expr.contains('$'), "unknown Grafana variable in {expr}");
        // JSON strings are valid YAML double-quoted scalars.
        let quoted = serde_json::to_string(&expr).unwrap();
        rules.push_str(&format!(
            "      - record: dashboard:expr_{i}\n        expr: {quoted}\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-rules.yml");
    std::fs::write(&file, &rules).unwrap();
    if let Some(out) = promtool(&["check", "rules", path_str(&file)]) {
        assert_success(&format!("promtool check rules on\n{rules}\n"), &out);
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// The metric names a PromQL expression selects: identifiers that are not
/// functions, keywords, label names (in `{...}` or `by (...)`), strings, durations
/// or numbers.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "atan2",
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
        "inf",
        "nan",
    ];
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // Skips from an opening bracket to just past its matching closing one, stepping
    // over quoted strings.
    let skip_group = |mut i: usize, open: char, close: char| -> usize {
        let mut depth = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '"' || c == '\'' || c == '`' {
                i = skip_string(&chars, i);
                continue;
            }
            if c == open {
                depth += 1;
            } else if c == close {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            i += 1;
        }
        i
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i);
        } else if c == '{' {
            i = skip_group(i, '{', '}');
        } else if c == '[' {
            i = skip_group(i, '[', ']');
        } else if c == '$' {
            // A Grafana variable: `$name` or `${name}`.
            i += 1;
            if chars.get(i) == Some(&'{') {
                i = skip_group(i, '{', '}');
            } else {
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // A number or a duration (`1e9`, `0.05`, `2m`).
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '.' || chars[i] == '_')
            {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let is_call = chars.get(next) == Some(&'(');
            if GROUPING.contains(&word.as_str()) {
                if is_call {
                    i = skip_group(next, '(', ')');
                }
            } else if !is_call && !KEYWORDS.contains(&word.as_str()) {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// From the opening quote at `i`, the index just past the closing one.
fn skip_string(chars: &[char], i: usize) -> usize {
    let quote = chars[i];
    let mut j = i + 1;
    while j < chars.len() {
        if chars[j] == '\\' && quote != '`' {
            j += 2;
            continue;
        }
        if chars[j] == quote {
            return j + 1;
        }
        j += 1;
    }
    j
}

#[test]
fn metric_names_finds_selectors_only() {
    let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"sum by (job, le) (rate(http_server_request_duration_seconds_bucket{http_route!~"/(a|b)", le="+Inf"}[5m]))"#
        ),
        ["http_server_request_duration_seconds_bucket"]
    );
    assert_eq!(
        names(
            r#"process_resident_memory_bytes{release=~"$release"} / on (job, instance) group_left () warden_memory_limit_bytes > 0.85"#
        ),
        ["process_resident_memory_bytes", "warden_memory_limit_bytes"]
    );
    assert_eq!(
        names(
            r#"count by (release) (warden_build_info) unless count by (release) (warden_build_info offset 2m)"#
        ),
        ["warden_build_info"]
    );
    assert_eq!(
        names("histogram_quantile(0.99, warden:http_request_duration_seconds_bucket:rate5m) * 1e3"),
        ["warden:http_request_duration_seconds_bucket:rate5m"]
    );
    assert_eq!(
        names(r#"ALERTS{alertname=~"Warden.*", release=~"${release}"}"#),
        ["ALERTS"]
    );
    assert_eq!(
        names("changes(nonexistent_metric[$__rate_interval]) > bool 0"),
        ["nonexistent_metric"]
    );
}
