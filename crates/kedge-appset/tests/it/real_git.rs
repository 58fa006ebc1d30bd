//! The Git generators read a real repository through Kedge's source cache, as the controller will: Argo CD's
//! directory example against a local repository laid out like Argo CD's, at a branch and at an older commit.

use kedge_appset::{Inputs, generate, parse_set};
use kedge_source::{Source, SourceConfig};
use kedge_testkit::GitFixture;

#[test]
fn git_directories_from_a_local_repository_at_a_revision() {
    let work = GitFixture::new().expect("repository");
    let base = "applicationset/examples/git-generator-directory/excludes/cluster-addons";
    work.write(
        &format!("{base}/prometheus-operator/Chart.yaml"),
        "name: prometheus-operator\n",
    )
    .expect("write");
    work.write(
        &format!("{base}/exclude-helm-guestbook/Chart.yaml"),
        "name: guestbook\n",
    )
    .expect("write");
    let first = work.commit("two addons").expect("commit");
    work.write(
        &format!("{base}/argo-workflows/kustomization.yaml"),
        "resources: []\n",
    )
    .expect("write");
    work.commit("a third").expect("commit");
    let url = format!("file://{}", work.path().display());

    let text = std::fs::read_to_string(format!(
        "{}/tests/fixtures/git-directories-exclude-example.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
    .replace("https://github.com/argoproj/argo-cd.git", &url);
    let parsed = parse_set(&text).expect("parses");

    kedge_source::install_crypto_provider();
    let cache = tempfile::tempdir().expect("cache");
    let source = Source::new(SourceConfig::new(cache.path())).expect("source");
    let names = |set: &kedge_api::ApplicationSet| -> Vec<String> {
        generate(set, &Inputs::new(&[], &source))
            .expect("generates")
            .iter()
            .map(|a| a.application.metadata.name.clone().unwrap_or_default())
            .collect()
    };
    assert_eq!(
        names(&parsed.set),
        ["argo-workflows", "prometheus-operator"]
    );

    // At the first commit, only the addon it had.
    let mut older = parsed.set.clone();
    older.spec.generators[0].git.as_mut().expect("git").revision = Some(first);
    assert_eq!(names(&older), ["prometheus-operator"]);

    // A branch that does not exist is reported with the repository and the revision.
    let mut missing = parsed.set.clone();
    missing.spec.generators[0]
        .git
        .as_mut()
        .expect("git")
        .revision = Some("no-such-branch".into());
    let err = generate(&missing, &Inputs::new(&[], &source)).expect_err("missing branch");
    assert!(
        err.to_string().starts_with(&format!(
            "spec.generators[0].git: failed to read {url} at no-such-branch"
        )),
        "{err}"
    );
}
