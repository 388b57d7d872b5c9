//! The files under `deploy/`: the Grafana dashboard's queries and the alert rules'
//! expressions, ready to send to Prometheus as instant queries.

use serde_json::Value;

use super::repo_file;

pub fn read(relative: &str) -> String {
    std::fs::read_to_string(repo_file(relative)).unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

pub fn dashboard() -> Value {
    serde_json::from_str(&read("deploy/grafana/mongoplex.json")).expect("the dashboard is valid JSON")
}

/// Every panel, including those nested in collapsed rows; rows themselves left out.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    let top = dashboard["panels"].as_array().expect("panels");
    top.iter()
        .flat_map(|p| std::iter::once(p).chain(p["panels"].as_array().into_iter().flatten()))
        .filter(|p| p["type"] != "row")
        .collect()
}

/// Each panel's PromQL, with Grafana's variables replaced by what an instant query takes.
pub fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    panels(dashboard)
        .iter()
        .flat_map(|p| p["targets"].as_array().expect("targets").iter())
        .map(|t| {
            t["expr"]
                .as_str()
                .expect("expr")
                .replace("$__rate_interval", "1m")
                .replace("$__interval", "1m")
                .replace("$__range", "5m")
                .replace("$job", ".+")
                .replace("$instance", ".+")
                .replace("$member", ".+")
                .replace("$app", ".+")
        })
        .collect()
}

/// The `expr` of every rule in alerts.yml: one-line values and `|` blocks.
pub fn alert_exprs() -> Vec<String> {
    let text = read("deploy/prometheus/alerts.yml");
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut exprs = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(rest) = l.trim_start().strip_prefix("expr:") else {
            continue;
        };
        if rest.trim() == "|" {
            let body: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|b| b.trim().is_empty() || indent(b) > indent(l))
                .map(|b| b.trim())
                .collect();
            exprs.push(body.join(" "));
        } else {
            exprs.push(rest.trim().to_string());
        }
    }
    exprs
}
