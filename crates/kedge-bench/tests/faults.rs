//! The fault suite's short form: kill -9 in the middle of a sync, a force-push, an invalid object in a wave, each
//! against a live `kedge run` on an audited test cluster; every one must converge with nothing lost or duplicated
//! and no write by a replica that no longer leads.

use std::path::PathBuf;
use std::process::Command;

/// The `kedge` binary of this build, beside `kedge-bench` (both are built for the workspace's tests).
fn kedge_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kedge-bench")).with_file_name("kedge")
}

#[test]
fn short_fault_suite_converges_with_nothing_lost() {
    let kedge = kedge_binary();
    assert!(
        kedge.exists(),
        "{} is missing: build the workspace (cargo build -p kedge) first",
        kedge.display()
    );
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let work = tempfile::tempdir().expect("tempdir");
    let out = work.path().join("faults.md");
    let run = Command::new(env!("CARGO_BIN_EXE_kedge-bench"))
        .arg("--root")
        .arg(&root)
        .arg("--kedge")
        .arg(&kedge)
        .args(["--faults", "--faults-quick", "--work-dir"])
        .arg(work.path())
        .arg("--out")
        .arg(&out)
        .env("RUST_BACKTRACE", "0")
        // A cluster of the suite's own, beside the test run's (scripts/test stops it), so that a `scripts/faults`
        // running at the same time keeps its own.
        .env(
            "KEDGE_FAULTS_CLUSTER",
            format!(
                "{}-faults",
                std::env::var("KEDGE_TEST_CLUSTER").unwrap_or_else(|_| "test".into())
            ),
        )
        .output()
        .expect("run kedge-bench --faults");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "fault suite failed:\n{stdout}\n{stderr}"
    );
    let table = std::fs::read_to_string(&out).expect("the table is written");
    for fault in ["kill-9", "git-down-slow", "force-push", "invalid-object"] {
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("| {fault} |")))
            .unwrap_or_else(|| panic!("no row for {fault} in\n{table}"));
        let cells: Vec<&str> = row.split(" | ").collect();
        assert_eq!(
            cells.get(2),
            Some(&"yes"),
            "{fault} did not converge: {row}"
        );
        assert_eq!(cells.get(4), Some(&"0"), "{fault} lost objects: {row}");
        assert_eq!(
            cells.get(5),
            Some(&"0"),
            "{fault} duplicated objects: {row}"
        );
        assert_eq!(
            cells.get(6),
            Some(&"0"),
            "{fault}: writes by a non-leader: {row}"
        );
    }
}
