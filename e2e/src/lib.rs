//! The browser-test harness: the real `hone` binary on a free port with a
//! fresh data directory, chromedriver, and headless Chromium driven through
//! fantoccini. Shared by the end-to-end tests and the WASM benchmark.

// Harness failures are test failures: panicking with the reason is the point.
#![allow(clippy::unwrap_used)]

pub mod http;
pub mod scenario;

use fantoccini::{Client, ClientBuilder, Locator};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child process ended (with its process group) when dropped.
pub struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        // chromedriver runs in its own process group with the browsers it
        // starts: end the whole group, so a failed test leaves no Chromium.
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn hone_binary() -> PathBuf {
    if let Ok(p) = std::env::var("HONE_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target"));
    target.join("debug/hone")
}

/// Starts `hone` on a free port with a fresh data directory; returns its URL.
/// The server's log (standard error) for a data directory `start_server`
/// used.
pub fn server_log(data: &std::path::Path) -> String {
    let path = std::env::var_os("HONE_E2E_SERVER_LOG")
        .map_or_else(|| data.join("server.log"), PathBuf::from);
    std::fs::read_to_string(path).unwrap_or_default()
}

pub fn start_server(data: &std::path::Path) -> (Proc, String) {
    let site = site_root();
    assert!(
        PathBuf::from(&site).join("pkg/hone.js").exists(),
        "WASM bundle missing under {site}/pkg: run scripts/build-site"
    );
    start_server_with(data, &[])
}

fn site_root() -> String {
    std::env::var("HONE_SITE_ROOT")
        .unwrap_or_else(|_| workspace_root().join("target/site").display().to_string())
}

/// The engine next to `hone`: `HONE_TRAIN_BIN`, else `hone-train` in the
/// same target folder.
pub fn train_binary() -> PathBuf {
    if let Ok(p) = std::env::var("HONE_TRAIN_BIN") {
        return PathBuf::from(p);
    }
    hone_binary().with_file_name("hone-train")
}

impl Proc {
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// `kill -9` of the process alone (not its group): its children see
    /// their pipes close, as after a crash.
    pub fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// SIGTERM, then waits for the exit; returns whether it exited 0.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-s", "TERM", &self.0.id().to_string()])
            .status();
        self.0.wait().is_ok_and(|s| s.success())
    }
}

/// `hone worker` against the data directory of a running server.
pub fn start_worker(data: &std::path::Path, env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(hone_binary());
    cmd.process_group(0)
        .arg("worker")
        .env("HONE_DATA_DIR", data)
        .env("HONE_TRAIN_BIN", train_binary())
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(data.join("worker.log"))
                .unwrap(),
        );
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting {} worker: {e}", hone_binary().display()));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines
            .next()
            .expect("hone worker exited before starting")
            .unwrap();
        if line.starts_with("Hone worker running") {
            break;
        }
    }
    Proc(child)
}

/// `start_server` with more environment (workers, leases…); the engine is
/// [`train_binary`].
pub fn start_server_with(data: &std::path::Path, env: &[(&str, &str)]) -> (Proc, String) {
    let site = site_root();
    let mut child = Command::new(hone_binary())
        .process_group(0)
        .env("HONE_BIND", "127.0.0.1:0")
        .env("HONE_DATA_DIR", data)
        .env("HONE_SITE_ROOT", &site)
        .env("HONE_PUBLIC_URL", "")
        .env("HONE_TRAIN_BIN", train_binary())
        .env_remove("DATABASE_URL")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        // HONE_E2E_SERVER_LOG=path keeps the server's log after the test.
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(
                    std::env::var_os("HONE_E2E_SERVER_LOG")
                        .map_or_else(|| data.join("server.log"), PathBuf::from),
                )
                .unwrap(),
        )
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", hone_binary().display()));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("hone exited before listening").unwrap();
        if let Some(url) = line.strip_prefix("Hone is running at ") {
            break url.to_owned();
        }
    };
    // Keep reading its standard output, so the server never blocks on a
    // full pipe.
    std::thread::spawn(move || for _ in lines {});
    (Proc(child), url)
}

/// A fresh, empty PostgreSQL database on the server `HONE_TEST_POSTGRES`
/// names (`scripts/test` starts one), made with `psql`; its URL. Named
/// `hone_test_…`, so `scripts/test` drops it on its next run.
pub fn postgres_database(name: &str) -> String {
    let admin = std::env::var("HONE_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!("this test needs PostgreSQL: set HONE_TEST_POSTGRES (scripts/test starts one)")
    });
    let db = format!("hone_test_e2e_{name}_{}", std::process::id());
    for sql in [
        format!("DROP DATABASE IF EXISTS {db}"),
        format!("CREATE DATABASE {db}"),
    ] {
        let out = Command::new("psql")
            .args(["-q", "-v", "ON_ERROR_STOP=1", &admin, "-c", &sql])
            .output()
            .expect("running psql (apt-get install postgresql-client)");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (base, _) = admin.rsplit_once('/').expect("a postgres://…/database URL");
    format!("{base}/{db}")
}

/// The environment that runs a process on a clock `offset` from the real
/// one (libfaketime's syntax: `+1d`, `-2h`): the clock of a machine set
/// wrong. The monotonic clock is left alone, as it is on such a machine.
pub fn clock_off(offset: &str) -> [(&'static str, String); 3] {
    let lib = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("faketime/libfaketimeMT.so.1"))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("libfaketime is not installed (scripts/setup --test installs it)")
        });
    [
        ("LD_PRELOAD", lib.display().to_string()),
        ("FAKETIME", offset.to_owned()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()),
    ]
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts chromedriver and waits for its "started successfully" line.
pub fn start_chromedriver() -> (Proc, u16) {
    let port = free_port();
    let mut child = Command::new("chromedriver")
        .process_group(0)
        .arg(format!("--port={port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromedriver (apt-get install chromium-driver)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("chromedriver exited").unwrap();
        if line.contains("started successfully") {
            break;
        }
    }
    (Proc(child), port)
}

pub async fn browser(port: u16, profile: &std::path::Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage",
                // `HONE_E2E_WINDOW=390,844` looks at the pages as a phone
                // does (with `HONE_E2E_SCREENSHOTS`).
                format!("--window-size={}", std::env::var("HONE_E2E_WINDOW").unwrap_or_else(|_| "1200,900".into())),
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("connecting to chromedriver")
}

/// A page driver with the waits every step needs.
pub struct Page {
    pub c: Client,
    pub base: String,
}

impl Page {
    pub async fn open(&self, path: &str) {
        self.c.goto(&format!("{}{path}", self.base)).await.unwrap();
        self.hydrated().await;
    }

    /// Waits until the WASM app has taken over the server's HTML.
    pub async fn hydrated(&self) {
        self.wait(Locator::Css("body[data-hydrated='true']")).await;
    }

    pub async fn wait(&self, loc: Locator<'_>) -> fantoccini::elements::Element {
        let what = format!("{loc:?}");
        match self
            .c
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(loc)
            .await
        {
            Ok(e) => e,
            Err(e) => {
                let src = self.c.source().await.unwrap_or_default();
                panic!("waiting for {what}: {e}\n--- page ---\n{src}");
            }
        }
    }

    /// Finds `css` and runs `act` on it; when the page re-renders the
    /// element between the two (hydration, a resource settling), finds it
    /// again rather than failing on a stale reference, until the same
    /// 20-second deadline as [`Page::wait`].
    async fn on_element<T, F, Fut>(&self, css: &str, act: F) -> T
    where
        F: Fn(fantoccini::elements::Element) -> Fut,
        Fut: std::future::Future<Output = Result<T, fantoccini::error::CmdError>>,
    {
        self.on(Locator::Css(css), act).await
    }

    /// [`Page::on_element`] for any locator.
    async fn on<T, F, Fut>(&self, loc: Locator<'_>, act: F) -> T
    where
        F: Fn(fantoccini::elements::Element) -> Fut,
        Fut: std::future::Future<Output = Result<T, fantoccini::error::CmdError>>,
    {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let e = self.wait(loc).await;
            match act(e).await {
                Ok(v) => return v,
                Err(e)
                    if e.is_stale_element_reference() && std::time::Instant::now() < deadline => {}
                Err(e) => panic!("{loc:?}: {e}"),
            }
        }
    }

    pub async fn fill(&self, css: &str, text: &str) {
        self.on_element(css, |e| async move {
            e.clear().await?;
            e.send_keys(text).await
        })
        .await
    }

    pub async fn click(&self, css: &str) {
        self.on_element(css, |e| async move { e.click().await })
            .await
    }

    pub async fn select(&self, css: &str, label: &str) {
        self.on_element(css, |e| async move { e.select_by_label(label).await })
            .await
    }

    pub async fn path(&self) -> String {
        self.c.current_url().await.unwrap().path().to_owned()
    }

    /// Saves a PNG of the page when `HONE_E2E_SCREENSHOTS` names a folder
    /// (for people reviewing the pages; the test asserts nothing on it).
    pub async fn snapshot(&self, name: &str) {
        if let Ok(dir) = std::env::var("HONE_E2E_SCREENSHOTS") {
            let png = self.c.screenshot().await.unwrap();
            std::fs::write(PathBuf::from(dir).join(format!("{name}.png")), png).unwrap();
        }
    }

    pub async fn text_of(&self, css: &str) -> String {
        self.on_element(css, |e| async move { e.text().await })
            .await
    }

    /// The text of the first element at `xpath`, once there (found again
    /// when the page re-renders it meanwhile).
    pub async fn text_at(&self, xpath: &str) -> String {
        self.on(Locator::XPath(xpath), |e| async move { e.text().await })
            .await
    }
}
