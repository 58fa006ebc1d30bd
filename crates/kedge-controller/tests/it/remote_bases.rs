//! End to end: a kustomization naming a remote base is refused by a controller started without
//! `allow_remote_bases` (`kedge run --allow-remote-bases`), with the base named, and syncs on one started with it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::{Env, RunningController, automated, condition};

/// Serves one ConfigMap manifest at every path over loopback HTTP; counts the requests.
struct ManifestServer {
    port: u16,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl ManifestServer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopped) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            let body = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: remote-cm\ndata:\n  from: remote\n";
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        ManifestServer {
            port,
            requests,
            stop,
        }
    }
}

impl Drop for ManifestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_bases_need_allow_remote_bases() {
    let env = Env::new("e2e-remote-bases").await;
    let server = ManifestServer::start();
    let base = format!("http://127.0.0.1:{}/cm.yaml", server.port);
    env.write(
        "app/kustomization.yaml",
        &format!("resources:\n  - {base}\n"),
    );
    let sha = env.commit_push("a remote base");

    let refusing = env.start_controller("c1");
    env.create_app("demo", "app", automated(true, true)).await;
    let app = env
        .wait_app("demo", "the remote base refused", |a| {
            condition(a, "Ready")
                .is_some_and(|c| c.status == "False" && c.message.contains("--allow-remote-bases"))
        })
        .await;
    let message = condition(&app, "Ready").expect("Ready").message.clone();
    assert!(message.contains(&base), "{message}");
    assert!(message.contains("app/kustomization.yaml"), "{message}");
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        0,
        "kustomize never fetched the base"
    );
    assert!(env.config_map_data("remote-cm").await.is_none());
    refusing.stop().await;

    let mut config = env.run_config("c2");
    config.allow_remote_bases = true;
    let _allowing = RunningController::start(env.cluster.kubeconfig(), config);
    env.wait_synced("demo", &sha).await;
    env.wait_config_map("remote-cm", "from", "remote").await;
    assert!(server.requests.load(Ordering::SeqCst) > 0);
}
