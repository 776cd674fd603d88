//! The walking skeleton in a real headless Chromium: first-run setup, an
//! admin adding a team and an expert, the expert creating a project and
//! uploading a file, the denials, and sign-out.
//!
//! Needs the `hone` binary and the WASM bundle built (the test script does
//! both), `chromedriver` and `chromium` on PATH.

// Tests fail loudly: unwrapping is the point here.
#![allow(clippy::unwrap_used)]

use fantoccini::{Client, ClientBuilder, Locator};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Proc(Child);

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

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn hone_binary() -> PathBuf {
    if let Ok(p) = std::env::var("HONE_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target"));
    target.join("debug/hone")
}

/// Starts `hone` on a free port with a fresh data directory; returns its URL.
fn start_server(data: &std::path::Path) -> (Proc, String) {
    let site = std::env::var("HONE_SITE_ROOT")
        .unwrap_or_else(|_| workspace_root().join("target/site").display().to_string());
    assert!(
        PathBuf::from(&site).join("pkg/hone.js").exists(),
        "WASM bundle missing under {site}/pkg: run scripts/build-site"
    );
    let mut child = Command::new(hone_binary())
        .process_group(0)
        .env("HONE_BIND", "127.0.0.1:0")
        .env("HONE_DATA_DIR", data)
        .env("HONE_SITE_ROOT", &site)
        .env("HONE_PUBLIC_URL", "")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(data.join("server.log")).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", hone_binary().display()));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("hone exited before listening").unwrap();
        if let Some(url) = line.strip_prefix("Hone is running at ") {
            break url.to_owned();
        }
    };
    (Proc(child), url)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts chromedriver and waits for its "started successfully" line.
fn start_chromedriver() -> (Proc, u16) {
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

async fn browser(port: u16, profile: &std::path::Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1200,900",
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
struct Page {
    c: Client,
    base: String,
}

impl Page {
    async fn open(&self, path: &str) {
        self.c.goto(&format!("{}{path}", self.base)).await.unwrap();
        self.hydrated().await;
    }

    /// Waits until the WASM app has taken over the server's HTML.
    async fn hydrated(&self) {
        self.wait(Locator::Css("body[data-hydrated='true']")).await;
    }

    async fn wait(&self, loc: Locator<'_>) -> fantoccini::elements::Element {
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

    async fn fill(&self, css: &str, text: &str) {
        let e = self.wait(Locator::Css(css)).await;
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.wait(Locator::Css(css)).await.click().await.unwrap();
    }

    async fn select(&self, css: &str, label: &str) {
        self.wait(Locator::Css(css))
            .await
            .select_by_label(label)
            .await
            .unwrap();
    }

    async fn path(&self) -> String {
        self.c.current_url().await.unwrap().path().to_owned()
    }

    /// Saves a PNG of the page when `HONE_E2E_SCREENSHOTS` names a folder
    /// (for people reviewing the pages; the test asserts nothing on it).
    async fn snapshot(&self, name: &str) {
        if let Ok(dir) = std::env::var("HONE_E2E_SCREENSHOTS") {
            let png = self.c.screenshot().await.unwrap();
            std::fs::write(PathBuf::from(dir).join(format!("{name}.png")), png).unwrap();
        }
    }

    async fn text_of(&self, css: &str) -> String {
        self.wait(Locator::Css(css)).await.text().await.unwrap()
    }
}

const ADMIN_PASSWORD: &str = "admin password 123";
const EXPERT_PASSWORD: &str = "expert password 456";

#[tokio::test(flavor = "multi_thread")]
async fn walking_skeleton_in_a_real_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let (_server, base) = start_server(&data);
    let (_driver, port) = start_chromedriver();
    let c = browser(port, &tmp.path().join("profile")).await;
    let p = Page { c, base };

    // First run: the empty instance sends everyone to setup.
    p.open("/").await;
    assert_eq!(p.path().await, "/setup");
    // Hydration: the password toggle works only when the WASM app runs.
    p.fill("#password", "secret").await;
    p.click("#password-toggle").await;
    p.wait(Locator::Css("#password[type='text']")).await;
    p.click("#password-toggle").await;
    p.wait(Locator::Css("#password[type='password']")).await;
    // A short password gets an inline error beside its field.
    p.fill("#username", "admin").await;
    p.fill("#team", "Team A").await;
    p.click("#create-admin").await;
    let err = p.text_of("#password-error").await;
    assert!(err.contains("12 characters"), "{err}");
    p.fill("#password", ADMIN_PASSWORD).await;
    p.click("#create-admin").await;
    p.wait(Locator::XPath("//span[@id='who' and contains(., 'admin')]"))
        .await;
    p.hydrated().await;
    assert_eq!(p.path().await, "/");

    // The admin creates team B, joins it, and adds an expert to team A.
    p.open("/admin").await;
    p.fill("#team-name", "Team B").await;
    p.click("#create-team").await;
    p.wait(Locator::XPath(
        "//select[@id='new-team']/option[.='Team B']",
    ))
    .await;
    let admin_row = "//tr[@id='user-admin']";
    p.wait(Locator::XPath(&format!(
        "{admin_row}//select/option[.='Team B']"
    )))
    .await;
    p.wait(Locator::XPath(&format!(
        "{admin_row}//select[starts-with(@id,'add-team-')]"
    )))
    .await
    .select_by_label("Team B")
    .await
    .unwrap();
    p.wait(Locator::XPath(&format!(
        "{admin_row}//button[.='Add to team']"
    )))
    .await
    .click()
    .await
    .unwrap();
    p.wait(Locator::XPath(&format!(
        "{admin_row}//ul[@class='chips']/li[contains(., 'Team B')]"
    )))
    .await;

    p.fill("#new-username", "erin").await;
    p.fill("#new-password", EXPERT_PASSWORD).await;
    p.select("#new-role", "Domain expert").await;
    p.select("#new-team", "Team A").await;
    p.click("#create-user").await;
    p.wait(Locator::XPath(
        "//tr[@id='user-erin']//li[contains(., 'Team A')]",
    ))
    .await;
    p.snapshot("admin").await;
    // The form empties itself for the next person.
    let left = p
        .wait(Locator::Css("#new-username"))
        .await
        .prop("value")
        .await
        .unwrap();
    assert_eq!(left.as_deref(), Some(""));

    // A project in team B that the expert must not see.
    p.open("/").await;
    p.fill("#project-name", "Secret B").await;
    p.select("#project-team", "Team B").await;
    p.click("#create-project").await;
    let link = p.wait(Locator::LinkText("Secret B")).await;
    let secret_path = link.attr("href").await.unwrap().unwrap();

    p.click("#sign-out").await;
    p.wait(Locator::Css("#login-form")).await;
    p.hydrated().await;

    // The expert signs in; wrong password first.
    p.fill("#username", "erin").await;
    p.fill("#password", "wrong password!").await;
    p.click("#sign-in").await;
    let err = p.text_of(".form-error").await;
    assert_eq!(err, "Wrong username or password.");
    p.fill("#password", EXPERT_PASSWORD).await;
    p.click("#sign-in").await;
    p.wait(Locator::XPath("//span[@id='who' and contains(., 'erin')]"))
        .await;
    p.hydrated().await;
    let source = p.c.source().await.unwrap();
    assert!(
        !source.contains("Secret B"),
        "the expert must not see team B's project"
    );
    assert!(
        p.c.find(Locator::LinkText("Admin")).await.is_err(),
        "no admin link for experts"
    );

    // Creates a project and uploads a file to it.
    p.fill("#project-name", "Support bot").await;
    p.click("#create-project").await;
    p.wait(Locator::LinkText("Support bot"))
        .await
        .click()
        .await
        .unwrap();
    p.wait(Locator::XPath(
        "//h1[@id='project-name' and .='Support bot']",
    ))
    .await;
    p.hydrated().await;
    let file = tmp.path().join("examples.jsonl");
    let content = "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"assistant\",\"content\":\"Hello!\"}]}\n".repeat(300);
    std::fs::write(&file, &content).unwrap();
    p.wait(Locator::Css("#upload-file"))
        .await
        .send_keys(&file.display().to_string())
        .await
        .unwrap();
    p.click("#upload-button").await;
    let row = p
        .wait(Locator::XPath(
            "//tr[@class='file'][td[@class='file-name' and .='examples.jsonl']]",
        ))
        .await;
    let size = row
        .find(Locator::Css(".file-size"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        size,
        format!(
            "{:.1} KiB ({} bytes)",
            content.len() as f64 / 1024.0,
            content.len()
        )
    );
    assert!(p
        .text_of("#upload-message")
        .await
        .contains("Uploaded examples.jsonl"));

    // The dataset check runs in the browser (WASM) on a file with known problems.
    let ok = |q: &str| {
        format!("{{\"messages\":[{{\"role\":\"user\",\"content\":\"{q}\"}},{{\"role\":\"assistant\",\"content\":\"Sure.\"}}]}}\n")
    };
    let fixture = [
        ok("How do I reset my password?"),
        ok("Where is my invoice?"),
        "{\"messages\": [ not json\n".to_string(),
        "\n".to_string(),
        "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello?\"}]}\n".to_string(),
        ok("How do I reset my password?"),
        ok("Email me at ada@example.org"),
    ]
    .concat();
    let checked = tmp.path().join("problems.jsonl");
    std::fs::write(&checked, fixture).unwrap();
    p.wait(Locator::Css("#check-file"))
        .await
        .send_keys(&checked.display().to_string())
        .await
        .unwrap();
    p.wait(Locator::Css("#check-report")).await;
    assert_eq!(p.text_of("#card-examples").await, "4");
    assert_eq!(p.text_of("#card-rejected").await, "2");
    let mut per_code = Vec::new();
    for code in [
        "invalid_json",
        "blank_line",
        "no_assistant",
        "duplicate",
        "personal_data",
        "too_few_examples",
    ] {
        let rows =
            p.c.find_all(Locator::Css(&format!("#findings tr[data-code='{code}']")))
                .await
                .unwrap();
        per_code.push((code, rows.len()));
    }
    assert_eq!(
        per_code,
        [
            ("invalid_json", 1),
            ("blank_line", 1),
            ("no_assistant", 1),
            ("duplicate", 1),
            ("personal_data", 1),
            ("too_few_examples", 1)
        ]
    );
    let excerpt = p
        .text_of("#findings tr[data-code='personal_data'] .excerpt")
        .await;
    assert!(
        !excerpt.contains("ada@example.org") && excerpt.contains("•"),
        "personal data must be masked: {excerpt}"
    );
    // Filtering by kind is client-side.
    p.wait(Locator::Css("#filter-code"))
        .await
        .select_by_value("duplicate")
        .await
        .unwrap();
    p.wait(Locator::XPath(
        "//table[@id='findings']/tbody[count(tr)=1]/tr[@data-code='duplicate']",
    ))
    .await;
    p.wait(Locator::Css("#filter-code"))
        .await
        .select_by_value("all")
        .await
        .unwrap();
    p.snapshot("project").await;

    // Save it as a dataset: errors block until the person chooses to leave
    // them out; the server re-checks and must count the same split.
    let save = p.wait(Locator::Css("#save-dataset-button")).await;
    assert_eq!(
        save.attr("disabled").await.unwrap().as_deref(),
        Some("true")
    );
    p.fill("#split-seed", "7").await;
    p.fill("#split-train", "50").await;
    p.fill("#split-validation", "25").await;
    p.fill("#split-test", "25").await;
    // "Train a · validation b · test c examples", computed in the browser.
    let counts = p.text_of("#split-counts").await;
    let numbers: Vec<u32> = counts
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert_eq!(numbers.iter().sum::<u32>(), 4, "{counts}");
    p.click("#drop-rejected").await;
    p.click("#save-dataset-button").await;
    let row = p
        .wait(Locator::XPath(
            "//table[@id='datasets']//tr[@data-name='problems']",
        ))
        .await;
    let split = row
        .find(Locator::Css(".split-counts"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The server's own split agrees with the browser's.
    assert_eq!(
        split,
        format!("{} · {} · {}", numbers[0], numbers[1], numbers[2])
    );
    assert!(p
        .text_of("#save-message")
        .await
        .contains("Saved the dataset"));

    // Refusals: the admin page and team B's project.
    p.open("/admin").await;
    assert_eq!(p.text_of("h1").await, "Access denied");
    assert!(
        !p.c.source().await.unwrap().contains("user-admin"),
        "admin data leaked"
    );
    p.open(&secret_path).await;
    assert_eq!(p.text_of("h1").await, "Not found");
    assert!(!p.c.source().await.unwrap().contains("Secret B"));

    // Sign-out ends the session: the dashboard now asks to sign in.
    p.open("/").await;
    p.click("#sign-out").await;
    p.wait(Locator::Css("#login-form")).await;
    p.open("/").await;
    assert_eq!(p.path().await, "/login");

    p.c.close().await.unwrap();
}
