//! Render benchmark: a generated 1,000-object directory and a kustomize overlay, ours against plain
//! `kubectl kustomize` / `kustomize build`. Prints figures; run with
//! `cargo run --release -p kedge-render --example bench_render`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kedge_render::{
    CacheConfig, KustomizeCommand, KustomizeConfig, RenderConfig, RenderOptions, Renderer,
};
use kedge_source::{Limits, LocalTree};

const FILES: usize = 100;
const OBJECTS_PER_FILE: usize = 10;

fn object(i: usize) -> String {
    match i % 3 {
        0 => format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\n  labels:\n    app: app-{i}\n    \
             tier: backend\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: app-{i}\n  template:\n    \
             metadata:\n      labels:\n        app: app-{i}\n    spec:\n      containers:\n      - name: main\n        \
             image: registry.example/app:{i}.0.0\n        ports:\n        - containerPort: 8080\n        resources:\n          \
             requests: {{cpu: 100m, memory: 128Mi}}\n        env:\n        - name: MODE\n          value: production\n      \
             volumes:\n      - name: cfg\n        configMap: {{name: cfg-{i}, defaultMode: 0644}}\n"
        ),
        1 => format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{i}\nspec:\n  selector:\n    app: app-{i}\n  ports:\n  \
             - port: 80\n    targetPort: 8080\n"
        ),
        _ => format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg-{i}\ndata:\n  settings.conf: |\n    listen = 8080\n    \
             mode = production\n    id = {i}\n  flag: \"true\"\n"
        ),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn time<F: FnMut()>(runs: usize, mut f: F) -> Duration {
    f();
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn write_dir(root: &Path) -> usize {
    let app = root.join("big");
    std::fs::create_dir_all(&app).unwrap();
    let mut bytes = 0;
    for f in 0..FILES {
        let docs: Vec<String> = (0..OBJECTS_PER_FILE)
            .map(|d| object(f * OBJECTS_PER_FILE + d))
            .collect();
        let text = docs.join("---\n");
        bytes += text.len();
        std::fs::write(app.join(format!("f{f:03}.yaml")), text).unwrap();
    }
    bytes
}

fn write_overlay(root: &Path, objects: usize) {
    let base = root.join("kbase");
    std::fs::create_dir_all(&base).unwrap();
    let mut resources = String::from("resources:\n");
    for f in 0..objects.div_ceil(OBJECTS_PER_FILE) {
        let docs: Vec<String> = (0..OBJECTS_PER_FILE)
            .map(|d| object(f * OBJECTS_PER_FILE + d))
            .collect();
        std::fs::write(base.join(format!("f{f:03}.yaml")), docs.join("---\n")).unwrap();
        resources.push_str(&format!("- f{f:03}.yaml\n"));
    }
    std::fs::write(base.join("kustomization.yaml"), resources).unwrap();
    let prod = root.join("koverlays/prod");
    std::fs::create_dir_all(&prod).unwrap();
    std::fs::write(
        prod.join("kustomization.yaml"),
        "resources:\n- ../../kbase\nnamespace: prod\nnamePrefix: prod-\nlabels:\n- pairs: {env: prod}\n  includeSelectors: true\n\
         images:\n- name: registry.example/app\n  newTag: 9.9.9\n",
    )
    .unwrap();
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = write_dir(tmp.path());
    write_overlay(tmp.path(), 1000);
    let tree = LocalTree::new(
        tmp.path(),
        Limits {
            max_total_bytes: u64::MAX,
            max_objects: u64::MAX,
            ..Limits::default()
        },
    )
    .unwrap();
    let opts = RenderOptions::default();
    let uncached = Renderer::new(RenderConfig {
        cache: CacheConfig {
            max_entries: 0,
            max_bytes: 0,
        },
        ..RenderConfig::default()
    });

    println!(
        "== directory: {} files, {} objects, {} KiB",
        FILES,
        FILES * OBJECTS_PER_FILE,
        bytes / 1024
    );
    let n = uncached.render(&tree, "big", &opts).unwrap().len();
    assert_eq!(n, FILES * OBJECTS_PER_FILE);
    let d = time(10, || {
        uncached.render(&tree, "big", &opts).unwrap();
    });
    println!(
        "render (no cache)        median {} = {:.0} objects/s, {:.1} MiB/s",
        ms(d),
        n as f64 / d.as_secs_f64(),
        bytes as f64 / d.as_secs_f64() / 1048576.0
    );
    let cached = Renderer::default();
    let t = Instant::now();
    cached.render(&tree, "big", &opts).unwrap();
    println!("render (cache miss)      {}", ms(t.elapsed()));
    let d = time(10, || {
        cached.render(&tree, "big", &opts).unwrap();
    });
    println!(
        "render (cache hit)       median {} (LocalTree dir_id hashes the directory; a Git tree id is a lookup)",
        ms(d)
    );

    let command = KustomizeCommand::resolve(&KustomizeConfig::default());
    match &command {
        Ok(c) => println!(
            "\n== kustomize overlay (../../kbase, 1000 objects) with {}",
            c.program()
        ),
        Err(e) => {
            println!("\n== kustomize: {e}");
            println!("peak RSS {} MiB", peak_rss_kib() / 1024);
            return;
        }
    }
    let set = uncached.render(&tree, "koverlays/prod", &opts).unwrap();
    let d_ours = time(5, || {
        uncached.render(&tree, "koverlays/prod", &opts).unwrap();
    });
    println!(
        "kedge render (kustomize + parse + checks)  median {} ({} objects)",
        ms(d_ours),
        set.len()
    );
    let dir = tmp.path().join("koverlays/prod");
    let mut refs: Vec<(&str, Vec<String>)> = Vec::new();
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_ok()
    {
        refs.push(("kubectl", vec!["kustomize".into()]));
    }
    if let Ok(KustomizeCommand::Kustomize(bin)) = &command {
        refs.push((bin.to_str().unwrap(), vec!["build".into()]));
    }
    for (prog, args) in refs {
        let d = time(5, || {
            let out = Command::new(prog).args(&args).arg(&dir).output().unwrap();
            assert!(out.status.success());
        });
        println!("{prog} {} alone  median {}", args.join(" "), ms(d));
    }
    let cached = Renderer::default();
    cached.render(&tree, "koverlays/prod", &opts).unwrap();
    let d = time(10, || {
        cached.render(&tree, "koverlays/prod", &opts).unwrap();
    });
    println!("kedge render (cache hit)  median {}", ms(d));
    println!("\npeak RSS {} MiB", peak_rss_kib() / 1024);
}
