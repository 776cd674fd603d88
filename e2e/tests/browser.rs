//! The walking skeleton in a real headless Chromium: first-run setup, an
//! admin adding a team and an expert, the expert creating a project and
//! checking and saving a dataset, the denials, and sign-out.
//!
//! Needs the `hone` binary and the WASM bundle built (the test script does
//! both), `chromedriver` and `chromium` on PATH.

// Tests fail loudly: unwrapping is the point here.
#![allow(clippy::unwrap_used)]

use fantoccini::Locator;
use hone_e2e::{browser, start_chromedriver, start_server, Page};

const ADMIN_PASSWORD: &str = "admin password 123";
const EXPERT_PASSWORD: &str = "expert password 456";

#[tokio::test(flavor = "multi_thread")]
async fn walking_skeleton_in_a_real_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // A second base model: the demo tokenizer with a 16-token context.
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tiny = data.join("models/tiny-context");
    std::fs::create_dir_all(&tiny).unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(repo.join("models/hone-demo").join(f), tiny.join(f)).unwrap();
    }
    std::fs::write(
        tiny.join("config.json"),
        r#"{"max_position_embeddings": 16}"#,
    )
    .unwrap();
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

    // The admin resets erin's password (to the one erin signs in with).
    p.click("button[aria-label='Reset the password of erin']")
        .await;
    p.fill("#user-erin input[name=password]", EXPERT_PASSWORD)
        .await;
    p.snapshot("admin-reset").await;
    p.click("#user-erin form.reset-password button[type=submit]")
        .await;
    p.wait(Locator::Css("#reset-ok")).await;
    // Storage by team: nothing stored yet.
    let storage = p.text_of("#storage").await;
    assert!(storage.contains("Team A"), "{storage}");
    p.c.execute(
        "document.getElementById('storage-panel').scrollIntoView()",
        vec![],
    )
    .await
    .unwrap();
    p.snapshot("admin-storage").await;

    // The scheduling pages: devices (the server's own CPU slot), quotas,
    // weights, the usage chart and the audit log with this session's
    // changes.
    p.open("/admin/queue").await;
    p.hydrated().await;
    let devices = p.text_of("#devices").await;
    assert!(devices.contains("Ready"), "{devices}");
    let quotas = p.text_of("#quotas").await;
    assert!(
        quotas.contains("Team A") && quotas.contains("Team B"),
        "{quotas}"
    );
    p.snapshot("admin-queue").await;
    p.open("/admin/usage").await;
    p.wait(Locator::Css("#usage-chart")).await;
    p.snapshot("admin-usage").await;
    p.open("/admin/audit").await;
    p.hydrated().await;
    let audit = p.text_of("#audit").await;
    assert!(audit.contains("password reset"), "{audit}");
    p.snapshot("admin-audit").await;

    // Their own account page: this browser's session, and a new password
    // too short is refused beside its field.
    p.open("/settings/account").await;
    p.hydrated().await;
    p.wait(Locator::XPath(
        "//table[@id='sessions']//tr[contains(@class,'current')]//span[.='This browser']",
    ))
    .await;
    p.fill("#current-password", ADMIN_PASSWORD).await;
    p.fill("#new-password", "short").await;
    // The browser's own minlength check would stop the form: this checks
    // the server's answer.
    p.c.execute(
        "document.getElementById('new-password').removeAttribute('minlength')",
        vec![],
    )
    .await
    .unwrap();
    p.click("#change-password").await;
    let err = p.text_of("#new_password-error").await;
    assert!(err.contains("12 characters"), "{err}");
    p.snapshot("account").await;
    p.c.execute(
        "document.getElementById('sessions-panel').scrollIntoView()",
        vec![],
    )
    .await
    .unwrap();
    p.snapshot("account-sessions").await;

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
    // Straight after a failure the server asks for a 1 s wait: the button
    // says so, comes back by itself, and the second try signs in.
    let signed_in = "//span[@id='who' and contains(., 'erin')]";
    let first = p
        .wait(Locator::XPath(&format!(
            "{signed_in} | //button[@id='sign-in' and @data-waiting]"
        )))
        .await;
    if first.attr("id").await.unwrap().as_deref() == Some("sign-in") {
        p.wait(Locator::Css("#sign-in:not([data-waiting]):not([disabled])"))
            .await;
        p.click("#sign-in").await;
    }
    p.wait(Locator::XPath(signed_in)).await;
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

    // Creates a project.
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
    // Lengths are real token counts (the demo model's tokenizer, in the
    // check's Web Worker).
    assert!(
        p.text_of(".histogram figcaption").await.contains("tokens"),
        "lengths must be counted in tokens"
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

    // Another model reads at most 16 tokens: choosing it checks the file
    // again, and every example is now too long for it.
    p.wait(Locator::Css("#check-model"))
        .await
        .select_by_value("tiny-context")
        .await
        .unwrap();
    p.wait(Locator::XPath("//span[@id='card-rejected' and .='6']"))
        .await;
    assert_eq!(
        p.c.find_all(Locator::Css("#findings tr[data-code='too_long']"))
            .await
            .unwrap()
            .len(),
        4
    );
    p.wait(Locator::Css("#check-model"))
        .await
        .select_by_value("hone-demo")
        .await
        .unwrap();
    p.wait(Locator::XPath("//span[@id='card-rejected' and .='2']"))
        .await;

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
    // Listed at once, and followed until the server's check is done.
    let row = p
        .wait(Locator::XPath(
            "//table[@id='datasets']//tr[@data-name='problems' and @data-state='ready']",
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
    // Its detail page: the server's numbers, the model, the split files.
    p.wait(Locator::LinkText("problems"))
        .await
        .click()
        .await
        .unwrap();
    p.wait(Locator::Css("#dataset-detail")).await;
    assert_eq!(p.text_of("#dataset-name").await, "problems");
    assert_eq!(p.text_of("#detail-examples").await, "4");
    assert_eq!(p.text_of("#detail-model").await, "hone-demo");
    assert!(p.text_of("#detail-lengths").await.contains("tokens"));
    assert_eq!(
        p.c.find_all(Locator::Css("#split-files a[download]"))
            .await
            .unwrap()
            .len(),
        3
    );
    p.snapshot("dataset").await;
    p.c.back().await.unwrap();
    p.wait(Locator::Css("#check-file")).await;
    p.hydrated().await;

    // A spreadsheet whose headers say nothing: the person picks the columns.
    let sheet = tmp.path().join("sheet.tsv");
    std::fs::write(
        &sheet,
        "q\ta\tkind\nHi\tHello\tgreeting\nBye\tGoodbye\tgreeting\nPrice?\t10 euros\tbilling\n",
    )
    .unwrap();
    p.wait(Locator::Css("#check-file"))
        .await
        .send_keys(&sheet.display().to_string())
        .await
        .unwrap();
    p.wait(Locator::Css("#column-picker")).await;
    assert_eq!(p.text_of("#card-examples").await, "0");
    p.wait(Locator::Css("#column-prompt"))
        .await
        .select_by_value("q")
        .await
        .unwrap();
    p.wait(Locator::Css("#column-response"))
        .await
        .select_by_value("a")
        .await
        .unwrap();
    p.wait(Locator::Css("#column-category"))
        .await
        .select_by_value("kind")
        .await
        .unwrap();
    p.click("#check-with-columns").await;
    p.wait(Locator::XPath("//span[@id='card-examples' and .='3']"))
        .await;
    p.wait(Locator::Css("#category-chart")).await;

    // A save the server's check refuses (errors not left out, sent as the
    // page sends saves): its page follows the check and shows why, line
    // by line.
    let project_path = p.path().await;
    let project = project_path.trim_start_matches("/projects/").to_owned();
    let id = p
        .c
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
            fetch('/api/projects/' + arguments[0] + '/datasets?name=refused&seed=1&ratios=80,10,10&expect=1,0,0', {
                method: 'POST',
                headers: {'X-File-Name': 'refused.jsonl'},
                body: '{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"}]}\n{"messages": [\n',
            }).then(r => r.json()).then(j => done(j.id), e => done(String(e)));"#,
            vec![project.clone().into()],
        )
        .await
        .unwrap();
    let id = id
        .as_i64()
        .unwrap_or_else(|| panic!("the save answered {id}"));
    p.open(&format!("{project_path}/datasets/{id}")).await;
    p.wait(Locator::XPath(
        "//p[@id='dataset-state' and contains(., 'refused')]",
    ))
    .await;
    p.wait(Locator::Css(
        "#refusal-findings tr[data-code='invalid_json']",
    ))
    .await;
    p.snapshot("dataset-refused").await;
    p.open(&project_path).await;
    p.wait(Locator::XPath(
        "//table[@id='datasets']//tr[@data-name='refused' and @data-state='refused']//a[contains(., 'see why')]",
    ))
    .await;
    p.snapshot("datasets-list").await;

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

    // The Content-Security-Policy: hydration, the check worker and every
    // page above ran under it with no violation. The control: an inline
    // script injected now is blocked and reported — once its report is in
    // the log, the pages' would have been too.
    p.hydrated().await;
    p.c.execute(
        "const s = document.createElement('script'); s.textContent = 'window.injected = 1'; document.body.appendChild(s); return 0;",
        vec![],
    )
    .await
    .unwrap();
    let injected =
        p.c.execute("return window.injected === 1;", vec![])
            .await
            .unwrap();
    assert_eq!(
        injected,
        serde_json::json!(false),
        "an inline script ran despite the CSP"
    );
    let reports = |log: &str| {
        log.lines()
            .filter(|l| l.contains("Content-Security-Policy violation"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let seen = loop {
        let seen = reports(&hone_e2e::server_log(&data));
        if !seen.is_empty() || std::time::Instant::now() > deadline {
            break seen;
        }
        // Polling the log for the browser's report (sent asynchronously).
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(seen.len(), 1, "CSP violations: {seen:#?}");
    assert!(
        seen[0].contains("/login"),
        "the control's report: {}",
        seen[0]
    );

    p.c.close().await.unwrap();
    // A panic in a request shows in the browser only as a broken page, if
    // at all: none may have happened.
    let log = hone_e2e::server_log(&data);
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
}
