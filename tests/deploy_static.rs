//! Static checks of what ships beside the binary, since these machines have no container
//! engine and no cluster: yamllint on every YAML file, kubernetes-validate on the
//! Kubernetes manifests, hadolint on the Dockerfile, and cross-checks of ports, paths,
//! variables and config keys against the binary itself (deploy_support). Every check
//! is also run once on a broken copy, which it must reject: a check that cannot fail
//! proves nothing.
//!
//! Not validated against a schema, said loudly at run time: the Prometheus Operator's
//! PodMonitor (a CRD; kubernetes-validate has only the built-in kinds) and the
//! kustomization.yaml files (not Kubernetes objects). Both are checked by structure.

mod common;
mod deploy_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::peers::{free_port, peers_dir, repo_dir, unique_temp_dir};
use deploy_support::*;
use serde_json::Value;

/// The Kubernetes version the manifests are written for (native sidecars, preStop sleep).
const KUBERNETES: &str = "1.30.0";

const HINT: &str = "run `bash tests/peers/install.sh` (see ../shared/PEERS.md)";

fn tool(name: &str) -> PathBuf {
    let path = peers_dir().join("manifest-venv/bin").join(name);
    assert!(path.exists(), "{} is missing: {HINT}", path.display());
    path
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}; {HINT}"))
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn yaml_files(under: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let root = repo_dir();
    find_files(
        &if under == "." {
            root.clone()
        } else {
            root.join(under)
        },
        &[".yaml", ".yml"],
        &mut files,
    );
    files.sort();
    files
}

/// YAML documents by file, through PyYAML (the manifest venv's python).
fn load(files: &[PathBuf]) -> Vec<(PathBuf, Vec<Value>)> {
    let o = run(Command::new(tool("python"))
        .arg(repo_dir().join("tests/deploy_support/yaml2json.py"))
        .args(files));
    assert!(o.status.success(), "yaml2json: {}", out(&o));
    let map: serde_json::Map<String, Value> = serde_json::from_slice(&o.stdout).unwrap();
    files
        .iter()
        .map(|f| {
            let docs = map[&f.display().to_string()].as_array().unwrap().clone();
            (f.clone(), docs)
        })
        .collect()
}

fn yamllint(files: &[PathBuf]) -> Output {
    // From the repository root, with relative paths: the config's `ignore` patterns
    // are matched against the paths as given.
    let root = repo_dir();
    let relative = files.iter().map(|f| f.strip_prefix(&root).unwrap_or(f));
    run(Command::new("yamllint")
        .current_dir(&root)
        .args(["--strict", "-c", ".yamllint.yaml"])
        .args(relative))
}

#[test]
fn yamllint_passes_on_every_yaml_file() {
    let files = yaml_files(".");
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    for want in [
        "deploy/kubernetes/base/configmap.yaml",
        "deploy/compose/compose.yaml",
        ".yamllint.yaml",
    ] {
        assert!(
            names.iter().any(|n| n.ends_with(want)),
            "{want} not found among {names:?}"
        );
    }
    let o = yamllint(&files);
    assert!(o.status.success(), "yamllint:\n{}", out(&o));
    eprintln!("yamllint --strict: {} files clean", files.len());

    let dir = unique_temp_dir("yamllint");
    let broken = dir.join("broken.yaml");
    std::fs::write(&broken, "a: 1\na: 2\nb:   [1,2]\n").unwrap();
    let o = yamllint(&[broken]);
    assert!(
        !o.status.success(),
        "yamllint accepted a duplicated key:\n{}",
        out(&o)
    );
    assert!(out(&o).contains("key-duplicates"), "{}", out(&o));
}

fn kubernetes_validate(files: &[PathBuf]) -> Output {
    run(Command::new(tool("kubernetes-validate"))
        .args(["--strict", "-k", KUBERNETES])
        .args(files))
}

#[test]
fn kubernetes_manifests_match_the_schemas() {
    let files = yaml_files("deploy/kubernetes");
    let loaded = load(&files);
    let kind_of = |f: &Path| -> String {
        let docs = &loaded.iter().find(|(p, _)| p == f).unwrap().1;
        assert_eq!(docs.len(), 1, "{}: one object per file", f.display());
        docs[0]["kind"].as_str().unwrap_or("").to_string()
    };
    let (schema_less, objects): (Vec<_>, Vec<_>) = files
        .iter()
        .cloned()
        .partition(|f| ["PodMonitor", "Kustomization"].contains(&kind_of(f).as_str()));
    assert!(objects.len() >= 4, "{objects:?}");

    // kubernetes-validate exits 0 when it has no schema for a kind, so every file must
    // say "passed"; a missing schema is a failure here, never a pass.
    let o = kubernetes_validate(&objects);
    let report = out(&o);
    assert!(o.status.success(), "kubernetes-validate:\n{report}");
    for f in &objects {
        let line = report.lines().find(|l| l.contains(&f.display().to_string()));
        assert!(
            line.is_some_and(|l| l.contains(" passed for resource")),
            "{} was not validated: {line:?}\n{report}",
            f.display()
        );
    }
    // The schema-less kinds: show that the validator indeed skips them (if it ever
    // gains their schema, this fails and they move to the list above).
    let o = kubernetes_validate(&schema_less);
    for f in &schema_less {
        let line = out(&o)
            .lines()
            .find(|l| l.contains(&f.display().to_string()))
            .map(str::to_owned);
        assert!(
            line.as_deref()
                .is_some_and(|l| l.contains("Couldn't find schema")),
            "{}: {line:?}",
            f.display()
        );
        eprintln!(
            "deploy_static: WARNING: {} ({}) is NOT validated against a schema: checked by structure only",
            f.display(),
            kind_of(f)
        );
    }
    // kustomization.yaml: every resource it lists exists.
    for f in schema_less.iter().filter(|f| kind_of(f) == "Kustomization") {
        let docs = &loaded.iter().find(|(p, _)| p == f).unwrap().1;
        for r in docs[0]["resources"].as_array().expect("resources") {
            let path = f.parent().unwrap().join(r.as_str().unwrap());
            assert!(
                path.exists(),
                "{} lists {}, which is missing",
                f.display(),
                path.display()
            );
        }
    }

    // A broken copy: a misspelt field in the Deployment.
    let dir = unique_temp_dir("k8s-validate");
    let text =
        std::fs::read_to_string(repo_dir().join("deploy/kubernetes/sidecar-native/deployment.yaml")).unwrap();
    let broken = dir.join("deployment.yaml");
    std::fs::write(
        &broken,
        text.replace("terminationGracePeriodSeconds", "terminationGracePeriodSecs"),
    )
    .unwrap();
    let o = kubernetes_validate(&[broken]);
    assert!(
        !o.status.success(),
        "kubernetes-validate accepted an unknown field:\n{}",
        out(&o)
    );
    assert!(out(&o).contains("terminationGracePeriodSecs"), "{}", out(&o));
}

fn hadolint(file: &Path) -> Output {
    run(Command::new(tool("hadolint")).arg(file))
}

#[test]
fn hadolint_passes_on_the_dockerfile() {
    let dockerfile = repo_dir().join("Dockerfile");
    let o = hadolint(&dockerfile);
    assert!(o.status.success(), "hadolint:\n{}", out(&o));

    let dir = unique_temp_dir("hadolint");
    let broken = dir.join("Dockerfile");
    let text = std::fs::read_to_string(&dockerfile).unwrap();
    std::fs::write(
        &broken,
        text.replace("WORKDIR /src", "WORKDIR /src\nRUN apt-get install curl"),
    )
    .unwrap();
    let o = hadolint(&broken);
    assert!(
        !o.status.success(),
        "hadolint accepted an unpinned, unclean apt-get:\n{}",
        out(&o)
    );
    assert!(out(&o).contains("DL3008"), "{}", out(&o));
}

/// Every object of deploy/kubernetes.
fn kubernetes_objects() -> Vec<Value> {
    load(&yaml_files("deploy/kubernetes"))
        .into_iter()
        .flat_map(|(_, docs)| docs)
        .collect()
}

#[test]
fn kubernetes_manifests_agree_with_the_binary() {
    let keys = known_keys();
    let objects = kubernetes_objects();
    let deployments: Vec<&Value> = objects.iter().filter(|o| o["kind"] == "Deployment").collect();
    assert_eq!(deployments.len(), 2, "the native and the classic sidecar form");
    for (i, d) in deployments.iter().enumerate() {
        let root = unique_temp_dir(&format!("k8s-pod-{i}"));
        check_deployment(d, &objects, &keys, &root).unwrap_or_else(|e| panic!("deployment {i}: {e}"));
    }

    // Broken copies, each of which the cross-check must reject.
    type Break = fn(&mut Value);
    let breaks: [(&str, Break); 6] = [
        ("readiness path", |d| {
            let c = &mut d["spec"]["template"]["spec"]["initContainers"][0];
            c["readinessProbe"]["httpGet"]["path"] = "/readyz".into();
        }),
        ("admin port", |d| {
            let c = &mut d["spec"]["template"]["spec"]["initContainers"][0];
            c["ports"][1]["containerPort"] = 9318.into();
        }),
        ("unknown variable", |d| {
            let c = &mut d["spec"]["template"]["spec"]["initContainers"][0];
            c["env"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({"name": "MONGOPLEX_MAX_POOL_SIZ", "value": "3"}));
        }),
        ("invalid setting", |d| {
            let c = &mut d["spec"]["template"]["spec"]["initContainers"][0];
            c["env"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({"name": "MONGOPLEX_MIN_POOL_SIZE", "value": "500"}));
        }),
        ("memory limit below the buffer budget", |d| {
            let c = &mut d["spec"]["template"]["spec"]["initContainers"][0];
            c["resources"]["limits"]["memory"] = "64Mi".into();
        }),
        ("native sidecar without restartPolicy", |d| {
            let c = &mut d["spec"]["template"]["spec"]["initContainers"][0];
            c.as_object_mut().unwrap().remove("restartPolicy");
        }),
    ];
    let native = deployments
        .iter()
        .find(|d| d["spec"]["template"]["spec"].get("initContainers").is_some())
        .expect("a native sidecar Deployment");
    for (what, breaking) in breaks {
        let mut d = (*native).clone();
        breaking(&mut d);
        let root = unique_temp_dir("k8s-broken");
        let e = check_deployment(&d, &objects, &keys, &root).expect_err(what);
        eprintln!("broken copy rejected ({what}): {e}");
    }
}

#[test]
fn the_dockerfile_agrees_with_the_binary() {
    let keys = known_keys();
    let text = std::fs::read_to_string(repo_dir().join("Dockerfile")).unwrap();
    check_dockerfile(&text, &keys).unwrap();
    let breaks = [
        ("EXPOSE 27016 9317", "EXPOSE 27017 9317"),
        (
            "MONGOPLEX_ADMIN=0.0.0.0:9317",
            "MONGOPLEX_ADMIN_ADDR=0.0.0.0:9317",
        ),
        ("\"health\"]", "\"healthz\"]"),
        ("USER 65532:65532", "USER root"),
        ("nonroot@sha256:", "nonroot@sha1:"),
    ];
    for (from, to) in breaks {
        assert!(text.contains(from), "{from:?} is not in the Dockerfile");
        let e = check_dockerfile(&text.replace(from, to), &keys).expect_err(to);
        eprintln!("broken copy rejected ({to}): {e}");
    }
}

#[test]
fn the_compose_stack_agrees_with_the_binary() {
    let keys = known_keys();
    let dir = repo_dir().join("deploy/compose");
    let loaded = load(&[dir.join("compose.yaml"), dir.join("prometheus.yml")]);
    let (compose, prometheus) = (&loaded[0].1[0], &loaded[1].1[0]);
    check_compose(compose, prometheus, &dir, &keys).unwrap();

    // promtool on the compose Prometheus config, with the rules file where the compose
    // file mounts it (beside the config).
    let tmp = unique_temp_dir("compose-prometheus");
    std::fs::copy(dir.join("prometheus.yml"), tmp.join("prometheus.yml")).unwrap();
    std::fs::copy(
        repo_dir().join("deploy/prometheus/alerts.yml"),
        tmp.join("alerts.yml"),
    )
    .unwrap();
    let o = run(Command::new("promtool")
        .args(["check", "config"])
        .arg(tmp.join("prometheus.yml")));
    assert!(o.status.success(), "promtool check config:\n{}", out(&o));

    type Break = fn(&mut Value, &mut Value);
    let breaks: [(&str, Break); 4] = [
        ("bad upstream", |c, _| {
            c["services"]["mongoplex"]["environment"]["MONGOPLEX_UPSTREAM"] =
                "mongodb://mongo1:notaport/".into()
        }),
        ("published port", |c, _| {
            c["services"]["mongoplex"]["ports"][1] = "127.0.0.1:9318:9318".into()
        }),
        ("scrape target", |_, p| {
            p["scrape_configs"][0]["static_configs"][0]["targets"][0] = "mongoplex:9318".into()
        }),
        ("missing mount", |c, _| {
            c["services"]["grafana"]["volumes"][1] = "../grafana/nope.json:/x:ro".into()
        }),
    ];
    for (what, breaking) in breaks {
        let (mut c, mut p) = (compose.clone(), prometheus.clone());
        breaking(&mut c, &mut p);
        let e = check_compose(&c, &p, &dir, &keys).expect_err(what);
        eprintln!("broken copy rejected ({what}): {e}");
    }
}

/// Every HTTP path the manifests, the compose stack and the Prometheus configs ask for
/// is one the admin listener serves (a running binary answers it, and not with 404).
#[test]
fn every_probe_and_scrape_path_is_served() {
    let mut docs = kubernetes_objects();
    let files = [
        repo_dir().join("deploy/compose/prometheus.yml"),
        repo_dir().join("deploy/prometheus/prometheus.yml"),
    ];
    docs.extend(load(&files).into_iter().flat_map(|(_, d)| d));
    let paths = http_paths(&docs);
    for want in ["/live", "/ready", "/metrics"] {
        assert!(paths.contains(want), "no {want} among {paths:?}");
    }
    let admin = format!("127.0.0.1:{}", free_port());
    let dead = format!("mongodb://127.0.0.1:{}/", free_port());
    let mut child = mongoplex()
        .args(["--listen", "127.0.0.1:0", "--admin", &admin, "--upstream", &dead])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr = admin.parse().unwrap();
    let get = |path: &str| mongoplex::cli::health::check(addr, path, Duration::from_secs(2));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while get("/live").is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the admin listener never came up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let served = |path: &str| match get(path) {
        Ok(_) => true,
        Err(e) => !e.contains("HTTP 404"),
    };
    let unserved: Vec<_> = paths.iter().filter(|p| !served(p)).collect();
    let control = served("/readyz");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        unserved.is_empty(),
        "paths the admin listener does not serve: {unserved:?}"
    );
    assert!(!control, "the check cannot fail: /readyz was answered");
}
