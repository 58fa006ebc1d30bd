//! `kedge appset diff`: a set whose Applications the controller made, then changed while the controller is stopped.
//! The diff names what the controller would create, change (with a diff of what the set writes) and delete, leaves
//! an Application the set did not make alone, follows `applicationsSync` and `preserveResourcesOnDeletion`, exits 1
//! when something would change and 0 when nothing would; the controller, started again, does what it said. A set
//! that does not exist, or a file naming another set, exits 2 with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::cli;
use crate::common;

use cli::{Run, kedge};
use common::*;
use kedge_api::ApplicationSet;
use kedge_testkit::wait_for;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

/// The set: one Application per element, each deploying its `path`.
fn set_json(env: &Env, elements: &[(&str, &str)], sync_policy: Value) -> Value {
    let elements: Vec<Value> = elements
        .iter()
        .map(|(name, path)| json!({ "name": name, "path": path }))
        .collect();
    json!({
        "apiVersion": "kedge.dev/v1alpha1", "kind": "ApplicationSet",
        "metadata": { "name": "fleet", "namespace": env.ns() },
        "spec": {
            "generators": [{ "list": { "elements": elements } }],
            "template": {
                "metadata": { "name": "{{name}}", "labels": { "tier": "web" } },
                "spec": {
                    "source": { "repoURL": env.repo_url, "targetRevision": "main", "path": "{{path}}" },
                    "destination": { "namespace": env.ns() },
                },
            },
            "syncPolicy": sync_policy,
        },
    })
}

async fn apply_set(env: &Env, set: &Value) {
    let set: ApplicationSet = serde_json::from_value(set.clone()).expect("set");
    Api::<ApplicationSet>::namespaced(env.client.clone(), env.ns())
        .patch(
            "fleet",
            &PatchParams::apply("test").force(),
            &Patch::Apply(&set),
        )
        .await
        .expect("apply the set");
}

/// The set's Applications, by name.
async fn members(env: &Env) -> Vec<String> {
    let mut names: Vec<String> = env
        .apps()
        .list(&Default::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter(|a| {
            a.labels()
                .get("kedge.dev/application-set")
                .map(String::as_str)
                == Some("fleet")
        })
        .map(|a| a.name_any())
        .collect();
    names.sort();
    names
}

async fn wait_members(env: &Env, expected: &[&str]) {
    wait_for(STEP, POLL, || async {
        (members(env).await == expected).then_some(())
    })
    .await
    .unwrap_or_else(|_| panic!("the set's Applications never became {expected:?}"));
}

/// The lines of the diff's output that do not belong to a unified diff.
fn verdicts(run: &Run) -> Vec<&str> {
    run.stdout
        .lines()
        .filter(|l| !l.starts_with(['+', '-', ' ', '@']))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_says_what_the_controller_would_do_and_the_controller_does_it() {
    let env = Env::new("cli-asdiff").await;
    env.write("apps/one/cm.yaml", &config_map("one", "k", "v"));
    env.commit_push("apps");
    let cache = tempfile::tempdir().unwrap();
    let first = [
        ("one", "apps/one"),
        ("two", "apps/two"),
        ("three", "apps/three"),
    ];
    apply_set(&env, &set_json(&env, &first, json!({}))).await;
    let controller = env.start_controller("c1");
    wait_members(&env, &["one", "three", "two"]).await;
    controller.stop().await;

    // What the controller made is what the set generates: nothing would change.
    let run = kedge(&env, cache.path(), &["appset", "diff", "fleet"]).await;
    run.expect_code(0);
    assert_eq!(
        verdicts(&run),
        ["application set fleet: 0 to create, 0 to change, 0 to delete, 3 unchanged"]
    );

    // The set changes while the controller is stopped: one moves, three goes, four is generated but taken by an
    // Application the set did not make, five is new.
    env.create_app("four", "apps/four", json!({})).await;
    let second = [
        ("one", "apps/one-v2"),
        ("two", "apps/two"),
        ("four", "apps/four"),
        ("five", "apps/five"),
    ];
    apply_set(&env, &set_json(&env, &second, json!({}))).await;
    let run = kedge(&env, cache.path(), &["appset", "diff", "fleet"]).await;
    run.expect_code(1);
    assert_eq!(
        verdicts(&run),
        [
            "created: five",
            "changed: one",
            "deleted: three (what it deployed stays: it has no kedge.dev/resources-finalizer finalizer)",
            "taken: four (taken by an Application the set did not make: the set leaves it alone)",
            "application set fleet: 1 to create, 1 to change, 1 to delete, 1 unchanged, 1 taken",
        ],
        "{}",
        run.stdout
    );
    // The diff of one is what the set writes, nothing else (no status, no server-set metadata).
    let diff: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with(['+', '-']))
        .collect();
    assert_eq!(diff.len(), 4, "{}", run.stdout);
    assert_eq!(diff[0], "--- one (live)");
    assert_eq!(diff[1], "+++ one (as the set writes it)");
    assert!(
        diff[2].starts_with('-') && diff[2].trim_end().ends_with("path: apps/one"),
        "{}",
        run.stdout
    );
    assert!(
        diff[3].starts_with('+') && diff[3].trim_end().ends_with("path: apps/one-v2"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("status") && !run.stdout.contains("resourceVersion"));

    // The same set from a file, with policies that keep what exists.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fleet.yaml");
    let file_arg = file.to_str().unwrap();
    std::fs::write(
        &file,
        serde_json::to_string(&set_json(
            &env,
            &second,
            json!({ "applicationsSync": "create-only" }),
        ))
        .unwrap(),
    )
    .unwrap();
    let run = kedge(&env, cache.path(), &["appset", "diff", "-f", file_arg]).await;
    run.expect_code(1);
    assert_eq!(
        verdicts(&run),
        [
            "created: five",
            "not changed: one (it differs from what the set generates, but applicationsSync create-only never updates)",
            "not deleted: three (no longer generated, but applicationsSync create-only never deletes)",
            "taken: four (taken by an Application the set did not make: the set leaves it alone)",
            "application set fleet: 1 to create, 0 to change, 0 to delete, 1 unchanged, 1 taken",
        ],
        "{}",
        run.stdout
    );
    std::fs::write(
        &file,
        serde_json::to_string(&set_json(
            &env,
            &[("one", "apps/one"), ("two", "apps/two")],
            json!({ "preserveResourcesOnDeletion": true }),
        ))
        .unwrap(),
    )
    .unwrap();
    let run = kedge(
        &env,
        cache.path(),
        &["appset", "diff", "fleet", "-f", file_arg],
    )
    .await;
    run.expect_code(1);
    assert_eq!(
        verdicts(&run),
        [
            "deleted: three (what it deployed stays: syncPolicy.preserveResourcesOnDeletion)",
            "application set fleet: 0 to create, 0 to change, 1 to delete, 2 unchanged",
        ],
        "{}",
        run.stdout
    );
    // Generators that return nothing at all: the controller keeps what the set made until a person confirms.
    std::fs::write(
        &file,
        serde_json::to_string(&set_json(&env, &[], json!({}))).unwrap(),
    )
    .unwrap();
    let run = kedge(&env, cache.path(), &["appset", "diff", "-f", file_arg]).await;
    run.expect_code(0);
    let held = "(the generators returned no Applications: the controller keeps the ones made before until the set \
                is annotated kedge.dev/confirm-deletions: \"true\")";
    assert_eq!(
        verdicts(&run),
        [
            format!("not deleted: one {held}"),
            format!("not deleted: three {held}"),
            format!("not deleted: two {held}"),
            "application set fleet: 0 to create, 0 to change, 0 to delete, 0 unchanged".to_owned(),
        ],
        "{}",
        run.stdout
    );
    // The first set, from a file: what exists is what it generates.
    std::fs::write(
        &file,
        serde_json::to_string(&set_json(&env, &first, json!({}))).unwrap(),
    )
    .unwrap();
    let run = kedge(&env, cache.path(), &["appset", "diff", "-f", file_arg]).await;
    run.expect_code(0);

    // Refusals: exit 2 with the reason.
    let run = kedge(&env, cache.path(), &["appset", "diff", "nope"]).await;
    run.expect_code(2);
    assert!(
        run.stderr.contains(&format!(
            "application set nope not found in namespace {}",
            env.ns()
        )),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());
    let run = kedge(
        &env,
        cache.path(),
        &["appset", "diff", "other", "-f", file_arg],
    )
    .await;
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("holds application set fleet, not other"),
        "{}",
        run.stderr
    );

    // The controller does what the diff said; then nothing would change (four stays taken).
    let controller = env.start_controller("c2");
    wait_members(&env, &["five", "one", "two"]).await;
    let one = env.app("one").await;
    assert_eq!(one.spec.source.path, "apps/one-v2");
    assert!(
        env.app("four")
            .await
            .labels()
            .get("kedge.dev/application-set")
            .is_none()
    );
    controller.stop().await;
    let run = kedge(&env, cache.path(), &["appset", "diff", "fleet"]).await;
    run.expect_code(0);
    assert_eq!(
        verdicts(&run),
        [
            "taken: four (taken by an Application the set did not make: the set leaves it alone)",
            "application set fleet: 0 to create, 0 to change, 0 to delete, 3 unchanged, 1 taken",
        ],
        "{}",
        run.stdout
    );
}
