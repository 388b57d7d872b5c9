//! The cross-checks of tests/deploy_static.rs: what the Dockerfile, the Kubernetes
//! manifests and the compose stack say about ports, paths, variables and config keys,
//! against what the binary accepts (`mongoplex check-config` decides, not a list kept
//! here). Each check returns `Err` naming the mismatch, so the test can also show it
//! failing on a broken copy.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The binary, with no MONGOPLEX_* variable from the test runner's environment.
pub fn mongoplex() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mongoplex"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("MONGOPLEX_")) {
        cmd.env_remove(key);
    }
    cmd
}

/// A check-config report: key → (value as printed, source).
pub type Report = BTreeMap<String, (String, String)>;

/// `mongoplex check-config` with these variables: the report, or start-up's error.
pub fn check_config(env: &[(String, String)]) -> Result<Report, String> {
    let out = mongoplex()
        .arg("check-config")
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    if !out.status.success() {
        // Names only: a value may be a secret.
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        return Err(format!(
            "check-config refused (with {names:?}): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut report = Report::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (lhs, source) = line
            .rsplit_once('#')
            .ok_or_else(|| format!("odd line {line:?}"))?;
        let (key, value) = lhs
            .split_once(" = ")
            .ok_or_else(|| format!("odd line {line:?}"))?;
        report.insert(key.into(), (value.trim().into(), source.trim().into()));
    }
    Ok(report)
}

/// The setting names the binary knows (every line of a default report).
pub fn known_keys() -> BTreeSet<String> {
    check_config(&[])
        .expect("defaults are valid")
        .into_keys()
        .collect()
}

pub fn env_name_ok(name: &str, keys: &BTreeSet<String>) -> Result<(), String> {
    let ok = name == "MONGOPLEX_CONFIG"
        || name
            .strip_prefix("MONGOPLEX_")
            .is_some_and(|k| k == k.to_ascii_uppercase() && keys.contains(&k.to_ascii_lowercase()));
    ok.then_some(())
        .ok_or_else(|| format!("{name} is not a variable mongoplex reads"))
}

/// The port of a `"IP:PORT"` setting in a report.
pub fn port(report: &Report, key: &str) -> Result<u16, String> {
    let value = report[key].0.trim_matches('"');
    value
        .parse::<std::net::SocketAddr>()
        .map(|a| a.port())
        .map_err(|_| format!("{key} = {value} has no port"))
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn arr<'a>(v: &'a Value, path: &[&str]) -> Vec<&'a Value> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

/// Every HTTP path the files ask the admin listener for (probes, scrape paths), so the
/// test can ask the running binary for each of them.
pub fn http_paths(docs: &[Value]) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    fn walk(v: &Value, paths: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    if let (true, Some(p)) = (
                        k == "path" || k == "metrics_path" || k == "prometheus.io/path",
                        v.as_str(),
                    ) {
                        if p.starts_with('/') && !p.starts_with("/var") && !p.starts_with("/etc") {
                            paths.insert(p.to_string());
                        }
                    }
                    walk(v, paths);
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, paths)),
            _ => {}
        }
    }
    docs.iter().for_each(|d| walk(d, &mut paths));
    paths
}

// ------------------------------------------------------------------------ Kubernetes

/// Writes the ConfigMap and Secret files that `container` mounts under `root`, with
/// every mount path in them (and in the environment) moved under `root` too; returns
/// the environment to run check-config with.
fn materialize(
    container: &Value,
    spec: &Value,
    objects: &[Value],
    root: &Path,
) -> Result<Vec<(String, String)>, String> {
    let mounts: Vec<(String, String)> = arr(container, &["volumeMounts"])
        .iter()
        .map(|m| {
            (
                s(m, &["name"]).unwrap_or("").to_string(),
                s(m, &["mountPath"]).unwrap_or("").to_string(),
            )
        })
        .collect();
    let moved = |text: &str| {
        mounts.iter().fold(text.to_string(), |t, (_, path)| {
            t.replace(path.as_str(), &format!("{}{path}", root.display()))
        })
    };
    for (name, path) in &mounts {
        let volume = arr(spec, &["volumes"])
            .into_iter()
            .find(|v| s(v, &["name"]) == Some(name))
            .ok_or_else(|| format!("volumeMount {name} has no volume"))?;
        let (kind, object_name, field) = if let Some(n) = s(volume, &["configMap", "name"]) {
            ("ConfigMap", n, "data")
        } else if let Some(n) = s(volume, &["secret", "secretName"]) {
            ("Secret", n, "stringData")
        } else {
            return Err(format!(
                "volume {name}: only configMap and secret volumes are checked"
            ));
        };
        let object = objects
            .iter()
            .find(|o| s(o, &["kind"]) == Some(kind) && s(o, &["metadata", "name"]) == Some(object_name))
            .ok_or_else(|| format!("volume {name}: no {kind} {object_name} in the manifests"))?;
        let data = object
            .get(field)
            .and_then(Value::as_object)
            .ok_or_else(|| format!("{kind} {object_name} has no {field}"))?;
        let dir = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).unwrap();
        for (file, body) in data {
            std::fs::write(dir.join(file), moved(body.as_str().unwrap_or(""))).unwrap();
        }
    }
    arr(container, &["env"])
        .iter()
        .map(|e| {
            let name = s(e, &["name"]).ok_or("an env entry without a name")?;
            let value = s(e, &["value"]).ok_or_else(|| format!("{name}: only literal values are checked"))?;
            Ok((name.to_string(), moved(value)))
        })
        .collect()
}

/// The port a probe or endpoint names (a number, or a container port's name).
fn port_of(v: Option<&Value>, container: &Value) -> Option<u16> {
    match v? {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(name) => arr(container, &["ports"])
            .into_iter()
            .find(|p| s(p, &["name"]) == Some(name))
            .and_then(|p| p.get("containerPort")?.as_u64())
            .and_then(|n| u16::try_from(n).ok()),
        _ => None,
    }
}

/// One Deployment with a mongoplex sidecar against the binary and the other objects.
pub fn check_deployment(
    deploy: &Value,
    objects: &[Value],
    keys: &BTreeSet<String>,
    root: &Path,
) -> Result<(), String> {
    let pod = deploy.pointer("/spec/template").ok_or("no pod template")?;
    let spec = &pod["spec"];
    let init = arr(spec, &["initContainers"]);
    let main = arr(spec, &["containers"]);
    let is_proxy = |c: &Value| s(c, &["image"]).is_some_and(|i| i.contains("mongoplex"));
    let proxies: Vec<&Value> = init
        .iter()
        .chain(&main)
        .copied()
        .filter(|c| is_proxy(c))
        .collect();
    let [proxy] = proxies[..] else {
        return Err(format!("{} mongoplex containers, want 1", proxies.len()));
    };
    if init.iter().any(|c| std::ptr::eq(*c, proxy)) && s(proxy, &["restartPolicy"]) != Some("Always") {
        return Err("a mongoplex init container without restartPolicy: Always blocks the app forever".into());
    }
    let env = materialize(proxy, spec, objects, root)?;
    for (name, _) in &env {
        env_name_ok(name, keys)?;
    }
    let report = check_config(&env)?;
    let (listen, admin) = (port(&report, "listen")?, port(&report, "admin")?);
    let named = |name: &str| port_of(Some(&Value::from(name)), proxy);
    if named("mongodb") != Some(listen) {
        return Err(format!(
            "containerPort mongodb is {:?}, listen is {listen}",
            named("mongodb")
        ));
    }
    for (probe, want) in [
        ("startupProbe", "/live"),
        ("livenessProbe", "/live"),
        ("readinessProbe", "/ready"),
    ] {
        let Some(p) = proxy.get(probe) else {
            if probe == "startupProbe" {
                continue;
            }
            return Err(format!("no {probe}"));
        };
        let path = s(p, &["httpGet", "path"]);
        let p_port = port_of(p.pointer("/httpGet/port"), proxy);
        if path != Some(want) || p_port != Some(admin) {
            return Err(format!(
                "{probe} asks {path:?} on {p_port:?}, want {want} on admin port {admin}"
            ));
        }
    }
    let ann = &pod["metadata"]["annotations"];
    let scrape = (
        s(ann, &["prometheus.io/scrape"]),
        s(ann, &["prometheus.io/port"]),
        s(ann, &["prometheus.io/path"]),
    );
    if scrape != (Some("true"), Some(admin.to_string().as_str()), Some("/metrics")) {
        return Err(format!(
            "scrape annotations {scrape:?} do not name admin port {admin} and /metrics"
        ));
    }
    let labels = pod["metadata"]["labels"].as_object().cloned().unwrap_or_default();
    for monitor in objects.iter().filter(|o| s(o, &["kind"]) == Some("PodMonitor")) {
        let selector = monitor
            .pointer("/spec/selector/matchLabels")
            .and_then(Value::as_object);
        let selects = selector.is_some_and(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)));
        if !selects {
            return Err("the PodMonitor does not select this pod".into());
        }
        for ep in arr(monitor, &["spec", "podMetricsEndpoints"]) {
            let ep_port = port_of(ep.get("port"), proxy);
            if ep_port != Some(admin) || s(ep, &["path"]) != Some("/metrics") {
                return Err(format!(
                    "PodMonitor endpoint {ep} is not /metrics on admin port {admin}"
                ));
            }
        }
    }
    let want_uri = format!("mongodb://127.0.0.1:{listen}/");
    for app in main.iter().filter(|c| !is_proxy(c)) {
        for e in arr(app, &["env"]) {
            if let Some(v) = s(e, &["value"]).filter(|v| v.starts_with("mongodb")) {
                if !v.starts_with(&want_uri) {
                    return Err(format!(
                        "the app's {v} does not go through the sidecar ({want_uri})"
                    ));
                }
            }
        }
    }
    let shutdown_s = report["shutdown_timeout_ms"].0.parse::<u64>().unwrap() / 1000;
    let pre_stop = proxy
        .pointer("/lifecycle/preStop/sleep/seconds")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    // The drain: /ready goes false, the listener stays open for shutdown_delay_ms, then
    // in-flight requests get shutdown_timeout_ms. All of it must end before the SIGKILL.
    let delay_s = report["shutdown_delay_ms"].0.parse::<u64>().unwrap() / 1000;
    let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
    if grace <= shutdown_s + delay_s + pre_stop {
        return Err(format!("terminationGracePeriodSeconds {grace} leaves no room for {pre_stop} s preStop + {delay_s} s shutdown_delay_ms + {shutdown_s} s shutdown"));
    }
    // The memory limit holds the buffer budget, or large messages get the pod killed.
    let limit = s(proxy, &["resources", "limits", "memory"]).ok_or("no memory limit")?;
    let limit_bytes = match limit.split_at(limit.len().saturating_sub(2)) {
        (n, "Mi") => n.parse::<u64>().ok().map(|n| n << 20),
        (n, "Gi") => n.parse::<u64>().ok().map(|n| n << 30),
        _ => None,
    }
    .ok_or_else(|| format!("memory limit {limit}: write it in Mi or Gi"))?;
    let budget = report["max_buffered_bytes"].0.parse::<u64>().unwrap();
    if limit_bytes < budget + (32 << 20) {
        return Err(format!(
            "memory limit {limit} is below max_buffered_bytes {budget} + 32 MiB"
        ));
    }
    let sc = &proxy["securityContext"];
    if sc["readOnlyRootFilesystem"] != Value::Bool(true) || sc["runAsNonRoot"] != Value::Bool(true) {
        return Err("mongoplex must run as non-root on a read-only root filesystem".into());
    }
    Ok(())
}

// ------------------------------------------------------------------------ Dockerfile

/// Instructions with their continuation lines joined, comments dropped.
pub fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                let joined = std::mem::take(&mut current);
                if let Some((op, rest)) = joined.trim().split_once(char::is_whitespace) {
                    out.push((op.to_ascii_uppercase(), rest.trim().to_string()));
                }
            }
        }
    }
    out
}

pub fn check_dockerfile(text: &str, keys: &BTreeSet<String>) -> Result<(), String> {
    let ins = dockerfile_instructions(text);
    let runtime_start = ins.iter().rposition(|(op, _)| op == "FROM").ok_or("no FROM")?;
    for (_, image) in ins.iter().filter(|(op, _)| op == "FROM") {
        let image = image.split_whitespace().next().unwrap_or("");
        let digest = image.split_once("@sha256:").map(|(_, d)| d).unwrap_or("");
        if digest.len() != 64 || !digest.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("base image {image} is not pinned by digest"));
        }
    }
    let runtime = &ins[runtime_start..];
    let mut env = Vec::new();
    for (_, rest) in runtime.iter().filter(|(op, _)| op == "ENV") {
        for pair in rest.split_whitespace() {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("ENV {pair}: use KEY=VALUE"))?;
            if k.starts_with("MONGOPLEX_") {
                env_name_ok(k, keys)?;
            }
            env.push((k.to_string(), v.to_string()));
        }
    }
    let report = check_config(&env)?;
    let want: BTreeSet<u16> = [port(&report, "listen")?, port(&report, "admin")?].into();
    let exposed: BTreeSet<u16> = runtime
        .iter()
        .filter(|(op, _)| op == "EXPOSE")
        .flat_map(|(_, r)| {
            r.split_whitespace()
                .map(|p| p.trim_end_matches("/tcp").parse::<u16>().unwrap_or(0))
        })
        .collect();
    if exposed != want {
        return Err(format!(
            "EXPOSE {exposed:?}, but the image's settings listen on {want:?}"
        ));
    }
    let user = runtime
        .iter()
        .rev()
        .find(|(op, _)| op == "USER")
        .map(|(_, u)| u.as_str());
    if matches!(user, None | Some("root") | Some("0") | Some("0:0")) {
        return Err(format!("the runtime image runs as {user:?}, not a non-root user"));
    }
    let json = |op: &str| -> Result<Vec<String>, String> {
        let (_, rest) = runtime
            .iter()
            .rev()
            .find(|(o, _)| o == op)
            .ok_or_else(|| format!("no {op}"))?;
        let array = rest.rsplit_once("CMD").map_or(rest.as_str(), |(_, a)| a).trim();
        serde_json::from_str(array).map_err(|e| format!("{op} {array}: not a JSON array: {e}"))
    };
    let entry = json("ENTRYPOINT")?;
    let health = json("HEALTHCHECK")?;
    if health.first() != entry.first() || health.len() < 2 {
        return Err(format!(
            "HEALTHCHECK {health:?} does not run the entrypoint {entry:?}"
        ));
    }
    // The HEALTHCHECK's subcommand exists in this binary.
    let ok = mongoplex()
        .args(&health[1..])
        .arg("--help")
        .output()
        .unwrap()
        .status
        .success();
    if !ok {
        return Err(format!(
            "`mongoplex {}` is not a command the binary accepts",
            health[1..].join(" ")
        ));
    }
    Ok(())
}

// --------------------------------------------------------------------------- compose

/// The mongoplex service of a compose file, its Prometheus config and bind mounts.
pub fn check_compose(
    compose: &Value,
    prometheus: &Value,
    dir: &Path,
    keys: &BTreeSet<String>,
) -> Result<(), String> {
    let services = compose["services"].as_object().ok_or("no services")?;
    let proxy = services.get("mongoplex").ok_or("no mongoplex service")?;
    let env: Vec<(String, String)> = proxy["environment"]
        .as_object()
        .ok_or("mongoplex: environment must be a map")?
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().map_or_else(|| v.to_string(), str::to_string),
            )
        })
        .collect();
    for (name, _) in &env {
        env_name_ok(name, keys)?;
    }
    let report = check_config(&env)?;
    let (listen, admin) = (port(&report, "listen")?, port(&report, "admin")?);
    let published: BTreeSet<u16> = arr(proxy, &["ports"])
        .iter()
        .filter_map(|p| p.as_str()?.rsplit(':').next()?.parse().ok())
        .collect();
    if published != BTreeSet::from([listen, admin]) {
        return Err(format!(
            "ports publish {published:?}, mongoplex listens on {listen} and {admin}"
        ));
    }
    if proxy["read_only"] != Value::Bool(true) {
        return Err("the mongoplex service should run read_only".into());
    }
    let target = format!("mongoplex:{admin}");
    let scraped = arr(prometheus, &["scrape_configs"]).iter().any(|job| {
        s(job, &["metrics_path"]).unwrap_or("/metrics") == "/metrics"
            && arr(job, &["static_configs"])
                .iter()
                .any(|sc| arr(sc, &["targets"]).iter().any(|t| t.as_str() == Some(&target)))
    });
    if !scraped {
        return Err(format!("Prometheus does not scrape {target}/metrics"));
    }
    for (name, service) in services {
        for v in arr(service, &["volumes"]) {
            let Some(src) = v.as_str().and_then(|v| v.split(':').next()) else {
                continue;
            };
            if (src.starts_with("./") || src.starts_with("../")) && !dir.join(src).exists() {
                return Err(format!("service {name} mounts {src}, which does not exist"));
            }
        }
    }
    Ok(())
}

pub fn find_files(root: &Path, ext: &[&str], out: &mut Vec<PathBuf>) {
    const SKIP: [&str; 5] = ["target", "node_modules", "corpus", "artifacts", "captured"];
    for entry in std::fs::read_dir(root).unwrap().map(Result::unwrap) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && !SKIP.contains(&name.as_str()) {
                find_files(&path, ext, out);
            }
        } else if ext.iter().any(|e| name.ends_with(e)) {
            out.push(path);
        }
    }
}
