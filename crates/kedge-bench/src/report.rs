//! The Markdown report.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::Args;
use crate::cluster::Counts;
use crate::procstat::mib;
use crate::scenarios::{Results, objects};

/// Flux v2.6's published figure for 1,000 Kustomizations (context only: another machine, another run).
const FLUX_ANCHOR: &str = "Flux v2.6 reconciled 1,000 Kustomizations in 4m16s at 175 MiB (published figure, other \
    machine and setup: context, not a measured ratio)";

pub fn machine(load_start: &str) -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    format!(
        "nproc {cpus} ({model}), memory {:.1} GiB, kernel {kernel}, load average at the start {load_start}, at the end {}",
        mem_kib as f64 / 1024.0 / 1024.0,
        loadavg()
    )
}

/// The 1, 5 and 15 minute load averages (other work on the machine skews absolute times; ratios less so).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn commit(root: &Path) -> String {
    if let Ok(c) = std::env::var("KEDGE_BENCH_COMMIT")
        && !c.trim().is_empty()
    {
        return c.trim().to_owned();
    }
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "HEAD"]) {
        Some(sha) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{sha} (with uncommitted changes)")
            } else {
                sha
            }
        }
        None => "unknown".into(),
    }
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 60.0 {
        format!("{s:.0} s ({}m{:02}s)", s as u64 / 60, s as u64 % 60)
    } else if s >= 10.0 {
        format!("{s:.1} s")
    } else {
        format!("{s:.2} s")
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn median(v: &[Duration]) -> Option<Duration> {
    let mut v = v.to_vec();
    v.sort();
    if v.is_empty() {
        return None;
    }
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2
    })
}

fn int(v: f64) -> String {
    let n = v.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn is_write(verb: &str) -> bool {
    matches!(
        verb,
        "APPLY" | "PATCH" | "CREATE" | "UPDATE" | "DELETE" | "DELETECOLLECTION"
    )
}

/// (writes, dry-runs, reads and others).
fn split(c: &Counts) -> (f64, f64, f64) {
    let mut w = 0.0;
    let mut d = 0.0;
    let mut o = 0.0;
    for ((verb, dry), v) in c {
        if *dry {
            d += v;
        } else if is_write(verb) {
            w += v;
        } else {
            o += v;
        }
    }
    (w, d, o)
}

fn verb_name(verb: &str, dry: bool) -> String {
    if dry {
        format!("{verb} (dry-run)")
    } else {
        verb.to_owned()
    }
}

fn own_split(c: &std::collections::BTreeMap<String, f64>) -> (f64, f64, f64) {
    let mut w = 0.0;
    let mut d = 0.0;
    let mut o = 0.0;
    for (verb, v) in c {
        if verb.ends_with("dry_run") {
            d += v;
        } else if matches!(verb.as_str(), "patch" | "create" | "update" | "delete") {
            w += v;
        } else {
            o += v;
        }
    }
    (w, d, o)
}

/// Renders the report.
pub fn render(args: &Args, root: &Path, r: &Results, took: Duration, load_start: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Kedge benchmark\n");
    let _ = writeln!(
        s,
        "- commit: `{}`\n- machine: {}\n- run: `bench/run --scales {}` (steady window {}, {} drift edits, {} webhook \
         and {} polling commits), {} in total\n- controller: `kedge run` {} (poll interval 60 s, resync 180 s, 8 \
         concurrent reconciles unless set), release build; test API server `testcluster/` on etcd with the workload \
         simulator (1 s delay before a Deployment reports ready); git daemon on 127.0.0.1\n",
        commit(root),
        machine(load_start),
        args.scales
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(","),
        secs(args.steady),
        args.drift_edits,
        args.webhook_commits,
        args.poll_commits,
        secs(took),
        if args.run_args.is_empty() {
            "with defaults".to_owned()
        } else {
            format!("with `{}`", args.run_args.join(" "))
        },
    );

    // 1. Time to production.
    if !r.ttp.is_empty() {
        let _ = writeln!(
            s,
            "## Time to production\n\nOne push adds N applications (5 objects each: 3 ConfigMaps, a Deployment, a \
             Service, each in its own namespace) to one monorepo and the N Application objects are created at once; \
             the clock stops when all N are Synced and Healthy. Controller figures from `/proc`; API requests from \
             the API server's `apiserver_request_total` (delta over the phase, the bench's own requests and the \
             in-server simulator/controllers taken out), cross-checked with Kedge's own request counter.\n"
        );
        let mut head = "| | ".to_owned();
        let mut rule = "| --- | ".to_owned();
        for t in &r.ttp {
            let _ = write!(
                head,
                "{} apps / {} objects | ",
                int(t.apps as f64),
                int(objects(t.apps) as f64)
            );
            rule.push_str("--- | ");
        }
        let _ = writeln!(s, "{}\n{}", head.trim_end(), rule.trim_end());
        let row = |label: &str, f: &dyn Fn(&crate::scenarios::Ttp) -> String| {
            let mut line = format!("| {label} | ");
            for t in &r.ttp {
                let _ = write!(line, "{} | ", f(t));
            }
            line.trim_end().to_owned()
        };
        let lines = [
            row("push to all Synced and Healthy", &|t| {
                if t.timed_out {
                    format!(
                        "**not reached**: {} of {} after {}",
                        int(t.reached as f64),
                        int(t.apps as f64),
                        secs(t.total)
                    )
                } else {
                    secs(t.total)
                }
            }),
            row("per application", &|t| {
                if t.timed_out {
                    "–".into()
                } else {
                    ms(t.total / t.apps.max(1) as u32)
                }
            }),
            row("Applications created (bench, at once)", &|t| secs(t.create)),
            row("controller peak RSS", &|t| {
                format!("{:.0} MiB", mib(t.peak_rss))
            }),
            row("controller RSS at the end", &|t| {
                format!("{:.0} MiB", mib(t.rss_after))
            }),
            row("controller CPU", &|t| format!("{:.1} s", t.cpu)),
            row(
                "test API server CPU (with its in-server controllers)",
                &|t| format!("{:.1} s", t.apiserver_cpu),
            ),
            row("etcd CPU", &|t| format!("{:.1} s", t.etcd_cpu)),
            row("machine busy (all cores)", &|t| {
                if t.machine_all > 0.0 {
                    format!("{:.0}%", 100.0 * t.machine_busy / t.machine_all)
                } else {
                    "-".to_owned()
                }
            }),
            row("what ran out", &|t| bottleneck(t)),
            row(
                "ceiling: the same namespaces and objects as parallel SSA PATCHes, to all available",
                &|t| ceiling_way(t, |c| &c.apply),
            ),
            row("… as parallel creates, to all available", &|t| {
                ceiling_way(t, |c| &c.create)
            }),
            row("Kedge / ceiling (SSA)", &|t| match &t.ceiling {
                Some(c) if !t.timed_out && c.apply.available > Duration::ZERO => format!(
                    "{:.2}×",
                    t.total.as_secs_f64() / c.apply.available.as_secs_f64()
                ),
                _ => "-".into(),
            }),
            row("reconciles", &|t| int(t.reconciles)),
            row("… mean pass, mean wait for a slot", &|t| {
                let per = |x: f64| {
                    if t.reconciles > 0.0 {
                        format!("{:.0} ms", 1000.0 * x / t.reconciles)
                    } else {
                        "-".to_owned()
                    }
                };
                format!("{}, {}", per(t.pass_seconds), per(t.wait_seconds))
            }),
            row("API requests by Kedge (server)", &|t| {
                let (w, d, o) = split(&t.server);
                int(w + d + o)
            }),
            row("… writes", &|t| int(split(&t.server).0)),
            row("… dry-runs", &|t| int(split(&t.server).1)),
            row("… reads (GET, LIST, WATCH)", &|t| int(split(&t.server).2)),
            row("… per object", &|t| {
                let (w, d, o) = split(&t.server);
                format!("{:.1}", (w + d + o) / objects(t.apps).max(1) as f64)
            }),
            row("Kedge's own counter (total)", &|t| {
                int(t.kedge_own.values().sum())
            }),
            row("in-server simulator/controllers (excluded)", &|t| {
                int(t.in_server.values().sum())
            }),
        ];
        for l in lines {
            let _ = writeln!(s, "{l}");
        }
        let _ = writeln!(s, "\nRequests by verb (server side, Kedge):\n");
        let verbs: BTreeSet<(String, bool)> = r
            .ttp
            .iter()
            .flat_map(|t| t.server.keys().cloned())
            .collect();
        let mut head = "| verb | ".to_owned();
        let mut rule = "| --- | ".to_owned();
        for t in &r.ttp {
            let _ = write!(head, "{} apps | ", int(t.apps as f64));
            rule.push_str("--- | ");
        }
        let _ = writeln!(s, "{}\n{}", head.trim_end(), rule.trim_end());
        for (verb, dry) in &verbs {
            let mut line = format!("| {} | ", verb_name(verb, *dry));
            for t in &r.ttp {
                let v = t.server.get(&(verb.clone(), *dry)).copied().unwrap_or(0.0);
                let _ = write!(line, "{} | ", int(v));
            }
            let _ = writeln!(s, "{}", line.trim_end());
        }
        let _ = writeln!(
            s,
            "\nRequests by verb and resource (server side, Kedge; the bench's own taken out), the largest first:\n"
        );
        let mut keys: Vec<(&String, f64)> = r
            .ttp
            .last()
            .map(|t| t.by_resource.iter().map(|(k, v)| (k, *v)).collect())
            .unwrap_or_default();
        keys.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let mut head = "| request | ".to_owned();
        let mut rule = "| --- | ".to_owned();
        for t in &r.ttp {
            let _ = write!(head, "{} apps | per app | ", int(t.apps as f64));
            rule.push_str("--- | --- | ");
        }
        let _ = writeln!(s, "{}\n{}", head.trim_end(), rule.trim_end());
        for (key, _) in keys.iter().take(20) {
            let mut line = format!("| {key} | ");
            for t in &r.ttp {
                let v = t.by_resource.get(*key).copied().unwrap_or(0.0);
                let _ = write!(line, "{} | {:.2} | ", int(v), v / (t.apps.max(1) as f64));
            }
            let _ = writeln!(s, "{}", line.trim_end());
        }
        let _ = writeln!(s, "\nAnchor: {FLUX_ANCHOR}.\n");
    }

    // 2. Steady state.
    if let Some(st) = &r.steady {
        let (w, d, o) = split(&st.server);
        let (kw, kd, ko) = own_split(&st.kedge_own);
        // Every UPDATE (PUT) left after the in-server controllers are taken out is a Lease renewal.
        let lease_renewals = st
            .server
            .get(&("UPDATE".to_owned(), false))
            .copied()
            .unwrap_or(0.0);
        let _ = writeln!(
            s,
            "## Steady state\n\n{} applications, nothing changed, window {} at the default intervals (poll 60 s, \
             resync 180 s). Goal: zero writes, zero dry-runs.\n\n| | server side | Kedge's own counter |\n| --- | --- | \
             --- |\n| writes | {} | {} |\n| … of which leader-election Lease renewals (one per 2 s) | {} | |\n\
             | … to Applications and managed objects | {} | |\n| dry-runs | {} | {} |\n| other requests | {} | {} |\n\
             | reconciles | {} | |\n| controller CPU | {:.1} s ({:.1}% of one core) | |\n",
            int(st.apps as f64),
            secs(st.window),
            int(w),
            int(kw),
            int(lease_renewals),
            int(w - lease_renewals),
            int(d),
            int(kd),
            int(o),
            int(ko),
            int(st.reconciles),
            st.cpu,
            100.0 * st.cpu / st.window.as_secs_f64().max(1.0),
        );
        if !st.server.is_empty() {
            let by: Vec<String> = st
                .server
                .iter()
                .map(|((v, dry), n)| format!("{} {}", verb_name(v, *dry), int(*n)))
                .collect();
            let _ = writeln!(s, "By verb (server side): {}.\n", by.join(", "));
        }
    }

    // 3. Drift.
    if let Some(d) = &r.drift {
        let _ = writeln!(
            s,
            "## Drift\n\nA live edit (merge patch by another field manager) to one managed object among {} \
             applications, alternating a ConfigMap value and a Deployment's replicas, each in a different \
             application; detect = the controller's `kedge_drift_events_total` moves, revert = the object reads \
             Git's value again (both polled every ~10 ms from the edit).\n\n| {} edits | median | max |\n| --- | --- | \
             --- |\n| time to detect | {} | {} |\n| time to revert | {} | {} |\n",
            int(d.apps as f64),
            d.detect.len(),
            median(&d.detect).map(ms).unwrap_or_default(),
            d.detect.iter().max().copied().map(ms).unwrap_or_default(),
            median(&d.revert).map(ms).unwrap_or_default(),
            d.revert.iter().max().copied().map(ms).unwrap_or_default(),
        );
        if d.missed > 0 {
            let _ = writeln!(s, "{} edit(s) were not reverted within 30 s.\n", d.missed);
        }
    }

    // 4. Commit to applied.
    if let Some(c) = &r.commit {
        let _ = writeln!(
            s,
            "## Commit to applied\n\nA one-line change to one application's ConfigMap among {} in the monorepo, \
             from `git push` to the object reading the new value.\n\n| path | runs | median | max |\n| --- | --- | --- \
             | --- |",
            int(c.apps as f64)
        );
        if c.webhook_served {
            let _ = writeln!(
                s,
                "| push + signed webhook (`X-Hub-Signature-256`) | {} | {} | {} |",
                c.webhook.len(),
                median(&c.webhook).map(secs).unwrap_or_default(),
                c.webhook
                    .iter()
                    .max()
                    .copied()
                    .map(secs)
                    .unwrap_or_default()
            );
        } else {
            let _ = writeln!(
                s,
                "| push + webhook | – | not measured: `kedge run` does not serve `POST /api/webhook` in this build | |"
            );
        }
        let _ = writeln!(
            s,
            "| push, polling ({} interval) | {} | {} | {} |\n",
            secs(c.poll_interval),
            c.polling.len(),
            median(&c.polling).map(secs).unwrap_or_default(),
            c.polling
                .iter()
                .max()
                .copied()
                .map(secs)
                .unwrap_or_default()
        );
    }

    // 5. Throughput.
    if let Some(t) = &r.throughput {
        let _ = writeln!(
            s,
            "## Sync throughput\n\n{} objects (half ConfigMaps, half Deployments) into an empty namespace, same API \
             server, same run (`kedge-engine` example `bench`).\n\n| | time | ratio to Kedge |\n| --- | --- | --- |",
            int(t.objects as f64)
        );
        let k = t.kedge.unwrap_or(f64::NAN);
        for (label, v) in [
            ("Kedge engine (dry-run plan + apply)", t.kedge),
            (
                "`kubectl apply --server-side -f` of the same files",
                t.kubectl,
            ),
            ("raw ceiling: all objects as parallel SSA PATCHes", t.raw),
        ] {
            match v {
                Some(v) => {
                    let _ = writeln!(s, "| {label} | {v:.2} s | {:.2}× |", v / k);
                }
                None => {
                    let _ = writeln!(s, "| {label} | (not reported) | |");
                }
            }
        }
        if let (Some(kc), Some(raw)) = (t.kubectl, t.raw) {
            let _ = writeln!(
                s,
                "\nkubectl / Kedge = {:.2}× (higher is better for Kedge); Kedge / raw ceiling = {:.2}×.{}\n",
                kc / k,
                k / raw,
                t.raw_failed
                    .filter(|f| *f > 0)
                    .map(|f| format!(" {f} raw PATCHes failed."))
                    .unwrap_or_default()
            );
        }
        let _ = writeln!(
            s,
            "<details><summary>engine example output</summary>\n\n```\n{}```\n</details>\n",
            t.output
        );
    }

    // 6. Memory.
    if let Some(m) = &r.memory {
        let o1 = objects(m.apps1);
        let o2 = objects(m.apps2);
        let per_obj = (m.rss2 as f64 - m.rss1 as f64) / (o2 - o1).max(1) as f64;
        let _ = writeln!(
            s,
            "## Memory per tracked object\n\nRSS of the controller after it settled, no pass waiting and five samples a \
             second apart within 1 MiB, at both sizes (same process: grown from {} to {} applications by one more \
             push, which took {}).\n\n| applications | objects | RSS |\n| --- | --- | --- \
             |\n| {} | {} | {:.0} MiB |\n| {} | {} | {:.0} MiB |\n\nGrowth: {:.1} KiB per object ({:.1} KiB per \
             application).\n",
            int(m.apps1 as f64),
            int(m.apps2 as f64),
            secs(m.grow_time),
            int(m.apps1 as f64),
            int(o1 as f64),
            mib(m.rss1),
            int(m.apps2 as f64),
            int(o2 as f64),
            mib(m.rss2),
            per_obj / 1024.0,
            per_obj * 5.0 / 1024.0,
        );
    }

    if !r.errors.is_empty() {
        let _ = writeln!(s, "## Errors\n");
        for e in &r.errors {
            let _ = writeln!(s, "- {e}");
        }
        s.push('\n');
    }
    s
}

/// Which resource limited a time-to-production phase: the machine's CPU when it was nearly all busy (naming the
/// largest user), else none of the CPUs measured, so waiting (latency, or work done one at a time) limited it.
/// One way of the scale's ceiling: time to all available, the writes' time and the cluster's CPU.
fn ceiling_way(
    t: &crate::scenarios::Ttp,
    way: fn(&crate::ceiling::Ceiling) -> &crate::ceiling::Way,
) -> String {
    match t.ceiling.as_ref().map(way) {
        Some(w) => format!(
            "{} (written in {}; API server {:.1} s, etcd {:.1} s)",
            secs(w.available),
            secs(w.written),
            w.apiserver_cpu,
            w.etcd_cpu
        ),
        None => "-".into(),
    }
}

fn bottleneck(t: &crate::scenarios::Ttp) -> String {
    if t.machine_all <= 0.0 {
        return "-".to_owned();
    }
    let busy = t.machine_busy / t.machine_all;
    let users = [
        ("test API server", t.apiserver_cpu),
        ("etcd", t.etcd_cpu),
        ("Kedge", t.cpu),
    ];
    let (top, secs) = users
        .iter()
        .copied()
        .fold(("", 0.0), |best, u| if u.1 > best.1 { u } else { best });
    let share = if t.machine_busy > 0.0 {
        100.0 * secs / t.machine_busy
    } else {
        0.0
    };
    if busy >= 0.85 {
        format!("machine CPU ({top}: {share:.0}% of the busy time)")
    } else {
        format!("no CPU ({:.0}% busy): waits limit it", 100.0 * busy)
    }
}
