//! A model is trained, evaluated by itself and signed off in the browser:
//! an expert trains on the demo model; the evaluation job runs without
//! anyone starting it; a reviewer finds the version in "Awaiting your
//! review", reads the report, rates five blind pairs (keys and buttons)
//! and approves; the expert hears of it. An expert's approval and the
//! launcher's own are refused (403), and a version the reviewer rejected
//! is approved again only with a new comment. Once approved, the export
//! runs by itself and the expert sees the model card and downloads the
//! adapter, the merged folder and both GGUF files in the browser, each
//! matching its SHA-256; before the approval every download is refused.

// Tests fail loudly: unwrapping is the point here.
#![allow(clippy::unwrap_used)]

use fantoccini::Locator;
use hone_e2e::http::Api;
use hone_e2e::scenario::{
    chat_examples, create_user_as, final_state, launch, login, save_dataset, settings, untar,
    PASSWORD,
};
use hone_e2e::{browser, start_chromedriver, start_server, Page};
use sha2::Digest;
use std::time::Duration;

/// Waits longer than `Page::wait`: training and evaluation take a while.
async fn wait_long(p: &Page, xpath: &str) -> fantoccini::elements::Element {
    match p
        .c
        .wait()
        .at_most(Duration::from_secs(180))
        .for_element(Locator::XPath(xpath))
        .await
    {
        Ok(e) => e,
        Err(e) => {
            let src = p.c.source().await.unwrap_or_default();
            panic!("waiting for {xpath}: {e}\n--- page ---\n{src}");
        }
    }
}

async fn sign_in(p: &Page, who: &str) {
    p.open("/login").await;
    p.fill("#username", who).await;
    p.fill("#password", PASSWORD).await;
    p.click("#sign-in").await;
    p.wait(Locator::XPath(&format!(
        "//span[@id='who' and contains(., '{who}')]"
    )))
    .await;
    p.hydrated().await;
}

/// The version `job` became and its evaluation job, once the scheduler
/// has opened it (asking every 50 ms, for at most two minutes).
fn version_of(api: &mut Api, project: i64, job: i64) -> (u64, i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let page = api.call("project", &[("id", &project.to_string())]).json();
        if let Some(v) = page["versions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["train_job"] == job)
        {
            return (
                v["number"].as_u64().unwrap(),
                v["eval_job"].as_i64().unwrap(),
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no version of job {job} after two minutes: {page}"
        );
        // Polling the server's state: the scheduler opens versions.
        std::thread::sleep(Duration::from_millis(50));
    }
}

const FORMATS: [&str; 4] = ["adapter", "merged", "gguf-f16", "gguf-q8_0"];

/// The export job of version `number`, once the scheduler has queued it
/// after the approval (asking every 50 ms, for at most two minutes).
fn export_of(api: &mut Api, project: i64, number: u64) -> i64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let page = api
            .call(
                "version",
                &[
                    ("project_id", &project.to_string()),
                    ("number", &number.to_string()),
                ],
            )
            .json();
        if let Some(id) = page["publishing"]["export_job"][0].as_i64() {
            return id;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no export job after two minutes: {page}"
        );
        // Polling the server's state: the scheduler queues exports.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether a blob named `sha256` is in the server's storage under `data`.
fn stored(data: &std::path::Path, sha256: &str) -> bool {
    let mut stack = vec![data.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if e.file_name().to_string_lossy() == sha256 {
                return true;
            }
        }
    }
    false
}

fn decide(api: &mut Api, version: i64, decision: &str, comment: &str) -> u16 {
    api.call(
        "decide",
        &[
            ("version_id", &version.to_string()),
            ("decision", decision),
            ("comment", comment),
        ],
    )
    .status
}

/// The rating page's "you have rated N".
async fn rated(p: &Page, n: u32) {
    p.wait(Locator::XPath(&format!(
        "//p[@id='rate-progress' and contains(., 'you have rated {n}')] | //p[@id='all-rated']"
    )))
    .await;
}

#[tokio::test]
async fn a_model_is_evaluated_by_itself_rated_blind_and_approved() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    create_user_as(&data, "ada", "expert", "Ops");
    create_user_as(&data, "rhea", "reviewer", "Ops");
    create_user_as(&data, "ida", "admin", "Ops");
    let (_server, base) = start_server(&data);
    let (_driver, port) = start_chromedriver();
    let expert = Page {
        c: browser(port, &tmp.path().join("profile-ada")).await,
        base: base.clone(),
    };
    let reviewer = Page {
        c: browser(port, &tmp.path().join("profile-rhea")).await,
        base: base.clone(),
    };

    // 1 · The expert saves sixty examples (six of them the test split)
    // and trains LoRA on the demo model with the launch page's defaults.
    sign_in(&expert, "ada").await;
    let p = &expert;
    p.fill("#project-name", "Arithmetic").await;
    p.click("#create-project").await;
    p.wait(Locator::LinkText("Arithmetic"))
        .await
        .click()
        .await
        .unwrap();
    p.wait(Locator::Css("#project-name")).await;
    p.hydrated().await;
    let project_path = p.path().await;
    let project: i64 = project_path.rsplit('/').next().unwrap().parse().unwrap();
    let file = tmp.path().join("arithmetic.jsonl");
    std::fs::write(&file, chat_examples(60)).unwrap();
    p.wait(Locator::Css("#check-file"))
        .await
        .send_keys(&file.display().to_string())
        .await
        .unwrap();
    p.wait(Locator::Css("#check-report")).await;
    p.fill("#dataset-name", "Arithmetic v1").await;
    p.click("#save-dataset-button").await;
    p.wait(Locator::XPath(
        "//p[@id='save-message' and contains(., 'Saved the dataset')]",
    ))
    .await;
    p.wait(Locator::Css("a.train-link"))
        .await
        .click()
        .await
        .unwrap();
    p.wait(Locator::Css("#launch-page")).await;
    p.hydrated().await;
    p.wait(Locator::Css("#fit[data-fits='true'][aria-busy='false']"))
        .await;
    p.click("#launch").await;
    p.wait(Locator::Css("#job-page")).await;
    p.hydrated().await;
    let job: i64 = p.path().await.rsplit('/').next().unwrap().parse().unwrap();
    wait_long(p, "//*[@id='job-state' and @data-state='succeeded']").await;

    // 2 · Nobody starts the evaluation: it runs by itself, its page
    // following it live.
    let mut ada = Api::new(&base);
    login(&mut ada, "ada");
    let (number, eval) = version_of(&mut ada, project, job);
    assert_eq!(number, 1);
    p.open(&format!("{project_path}/jobs/{eval}")).await;
    p.wait(Locator::XPath(&format!(
        "//h1[contains(., 'Evaluation of job {job}')]"
    )))
    .await;
    wait_long(p, "//*[@id='job-state' and @data-state='succeeded']").await;
    let version_path = format!("{project_path}/versions/{number}");
    p.open(&version_path).await;
    p.wait(Locator::Css("#version-page[data-state='awaiting_review']"))
        .await;
    // The expert reads the report but cannot decide.
    p.wait(Locator::Css("#metrics")).await;
    let why = p.text_of("#cannot-review").await;
    assert!(why.contains("Reviewers and admins"), "{why}");
    assert!(
        p.c.find_all(Locator::Css("#decide-form"))
            .await
            .unwrap()
            .is_empty(),
        "no decision form for an expert"
    );
    // Not approved: the launcher may delete it (not done here).
    p.wait(Locator::Css("#delete-version #delete-version-button"))
        .await;
    p.snapshot("version-expert").await;
    let version_id: i64 = {
        let page = ada.call(
            "version",
            &[
                ("project_id", &project.to_string()),
                ("number", &number.to_string()),
            ],
        );
        assert_eq!(page.status, 200, "{}", page.body);
        page.json()["version_id"].as_i64().unwrap()
    };
    assert_eq!(
        decide(&mut ada, version_id, "approved", "mine is good"),
        403
    );
    // Nothing leaves Hone before a reviewer approves it.
    for format in FORMATS {
        let (status, _) = ada.download(
            &format!("/api/versions/{version_id}/downloads/{format}"),
            None,
        );
        assert_eq!(status, 403, "{format} before approval");
    }

    // 3 · The reviewer finds it in their work list.
    let r = &reviewer;
    sign_in(r, "rhea").await;
    r.wait(Locator::Css("#unread")).await;
    let item = r
        .wait(Locator::XPath(
            "//section[@id='awaiting-review']//a[contains(., 'Arithmetic · version 1')]",
        ))
        .await;
    let listed = r.text_of("#awaiting-review").await;
    assert!(
        listed.contains("team Ops") && listed.contains("by ada"),
        "{listed}"
    );
    r.snapshot("review-dashboard").await;
    item.click().await.unwrap();
    r.wait(Locator::Css("#version-page")).await;
    r.hydrated().await;

    // The report: the engine's numbers with their intervals, every test
    // example side by side, the same as the JSON to download.
    let mut rhea = Api::new(&base);
    login(&mut rhea, "rhea");
    let report = rhea.get(&format!("/api/versions/{version_id}/report.json"));
    assert_eq!(report.status, 200, "{}", report.body);
    let report = report.json();
    let examples = report["items"].as_array().unwrap().len();
    assert_eq!(examples, 6, "six test examples");
    let rows =
        r.c.find_all(Locator::Css("#metrics tbody tr"))
            .await
            .unwrap();
    assert_eq!(rows.len(), report["metrics"].as_array().unwrap().len());
    let loss_row = r.text_of("#metrics tr[data-metric='Loss']").await;
    assert!(loss_row.contains(" to "), "an interval: {loss_row}");
    let cards =
        r.c.find_all(Locator::Css("#examples li.example"))
            .await
            .unwrap();
    assert_eq!(cards.len(), examples);
    r.snapshot("review-version").await;
    // "Only where the tuned model is worse" leaves out the others.
    r.click("#worse-only").await;
    let shown = r.text_of("#examples-count").await;
    let worse: usize = shown.split_whitespace().next().unwrap().parse().unwrap();
    assert!(worse <= examples, "{shown}");
    assert_eq!(
        r.c.find_all(Locator::Css("#examples li.example"))
            .await
            .unwrap()
            .len(),
        worse
    );

    // 4 · Five blind pairs: keys 1, 3 and 4, and the buttons.
    r.click("#rate-link").await;
    r.wait(Locator::Css("#rate-item")).await;
    r.hydrated().await;
    r.snapshot("review-rate").await;
    let a = r.text_of("#answer-a").await;
    let b = r.text_of("#answer-b").await;
    let texts: Vec<&str> = report["items"][0]["base"]["text"]
        .as_str()
        .into_iter()
        .chain(report["items"][0]["tuned"]["text"].as_str())
        .map(str::trim)
        .collect();
    assert!(
        texts.contains(&a.trim()) && texts.contains(&b.trim()),
        "the pair is the two models' answers: {a:?} {b:?} of {texts:?}"
    );
    let body = r.wait(Locator::Css("body")).await;
    body.send_keys("1").await.unwrap();
    rated(r, 1).await;
    r.click("#choose-b").await;
    rated(r, 2).await;
    let body = r.wait(Locator::Css("body")).await;
    body.send_keys("3").await.unwrap();
    rated(r, 3).await;
    r.fill("#rate-comment", "Neither says the number.").await;
    let body = r.wait(Locator::Css("body")).await;
    body.send_keys("4").await.unwrap();
    rated(r, 4).await;
    r.click("#choose-a").await;
    rated(r, 5).await;

    // The version page counts them: three decided, a tie, a "both bad".
    r.open(&version_path).await;
    let win = r.text_of("#win-rate").await;
    assert!(
        win.contains("over 5 rated") && win.contains("1 ties") && win.contains("1 both bad"),
        "{win}"
    );
    let page = rhea
        .call(
            "version",
            &[
                ("project_id", &project.to_string()),
                ("number", &number.to_string()),
            ],
        )
        .json();
    let overall = &page["ratings"]["overall"];
    assert_eq!(
        overall["wins"].as_u64().unwrap() + overall["losses"].as_u64().unwrap(),
        3,
        "{overall}"
    );
    assert!(r.text_of("#rate-link").await.contains("5 done"));

    // 5 · Approved, with a comment; the page says so and by whom.
    r.click("#decide-approve").await;
    r.fill("#decide-comment", "Five pairs rated; fine for a demo.")
        .await;
    r.click("#decide-submit").await;
    r.wait(Locator::Css(
        "#version-page[data-state='approved'] #decisions li[data-decision='approved']",
    ))
    .await;
    let decided = r.text_of("#decisions").await;
    assert!(
        decided.contains("rhea approved") && decided.contains("fine for a demo"),
        "{decided}"
    );
    r.snapshot("review-approved").await;
    // A second approval of the same version: recorded once.
    assert_eq!(
        decide(
            &mut rhea,
            version_id,
            "approved",
            "Five pairs rated; fine for a demo."
        ),
        200
    );
    let page = rhea
        .call(
            "version",
            &[
                ("project_id", &project.to_string()),
                ("number", &number.to_string()),
            ],
        )
        .json();
    assert_eq!(page["reviews"].as_array().unwrap().len(), 1, "{page}");

    // 5b · The export runs by itself; the expert sees the card and the
    // downloads, fetches each in the browser and checks its SHA-256.
    let export = export_of(&mut ada, project, number);
    assert_eq!(final_state(&mut ada, export), "succeeded");
    p.open(&version_path).await;
    p.wait(Locator::Css("#downloads")).await;
    p.hydrated().await;
    let card = p.text_of("#model-card").await;
    for fact in [
        "base_model: \"hone-demo\"",
        "library_name: peft",
        "## Data",
        "6 test",
        "## Evaluation",
        "Blind ratings: 5 examples rated",
        "rhea approved on",
        "fine for a demo",
    ] {
        assert!(card.contains(fact), "{fact:?} in the card:\n{card}");
    }
    p.snapshot("publish-downloads").await;
    assert!(
        p.c.find_all(Locator::Css("#delete-version"))
            .await
            .unwrap()
            .is_empty(),
        "an approved version offers no deletion"
    );
    for format in FORMATS {
        let row = format!("#downloads tr[data-format='{format}']");
        let shown = p.text_of(&format!("{row} code.sha")).await;
        let href = p
            .wait(Locator::Css(&format!("{row} a.download")))
            .await
            .attr("href")
            .await
            .unwrap()
            .unwrap();
        // The browser downloads it with its session and hashes it.
        let hashed = p
            .c
            .execute_async(
                "const [href, done] = arguments;
                 fetch(href).then(r => r.ok ? r.arrayBuffer() : Promise.reject(r.status))
                   .then(b => crypto.subtle.digest('SHA-256', b))
                   .then(d => done(Array.from(new Uint8Array(d)).map(x => x.toString(16).padStart(2, '0')).join('')))
                   .catch(e => done('failed: ' + e));",
                vec![serde_json::json!(href)],
            )
            .await
            .unwrap();
        assert_eq!(hashed.as_str().unwrap(), shown, "{format}");
        let (status, bytes) = ada.download(&href, None);
        assert_eq!(status, 200, "{format}");
        assert_eq!(hex::encode(sha2::Sha256::digest(&bytes)), shown, "{format}");
        let files = untar(&bytes);
        let names: Vec<&str> = files
            .iter()
            .map(|(n, _)| n.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(names[0], "README.md", "{format}: {names:?}");
        // The page's text drops the final newline only.
        assert!(
            String::from_utf8_lossy(&files[0].1).trim_end() == card.trim_end(),
            "{format}: the card shipped is the card shown"
        );
        let want: &[&str] = match format {
            "adapter" => &["adapter_config.json", "adapter_model.safetensors"],
            "merged" => &[
                "config.json",
                "model.safetensors",
                "tokenizer.json",
                "tokenizer_config.json",
            ],
            "gguf-f16" => &["model-f16.gguf"],
            _ => &["model-q8_0.gguf"],
        };
        for w in want {
            assert!(names.contains(w), "{format}: {w} in {names:?}");
        }
        if format.starts_with("gguf") {
            assert_eq!(&files[1].1[..4], b"GGUF", "{format}");
        }
        // A range past the end: 416.
        let (status, _) = ada.download(&href, Some(&format!("bytes={}-", bytes.len())));
        assert_eq!(status, 416);
    }

    // 5c · Deleting: the dataset the approved version was trained on is
    // kept (the page says why); an unused one goes, its files with it.
    let trained_on = ada.call("project", &[("id", &project.to_string())]).json()["datasets"][0]
        ["id"]
        .as_i64()
        .unwrap();
    p.open(&format!("{project_path}/datasets/{trained_on}"))
        .await;
    p.hydrated().await;
    p.click("#delete-dataset-button").await;
    let why = p.text_of("#delete-error").await;
    assert!(why.contains("approved"), "{why}");
    let spare = save_dataset(&mut ada, &data, project, 25, "ada");
    let sha = ada.call("dataset", &[("id", &spare.to_string())]).json()["split_sha256"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(stored(&data, &sha), "its train split is stored");
    p.open(&format!("{project_path}/datasets/{spare}")).await;
    p.hydrated().await;
    p.click("#delete-dataset-button").await;
    let said = p.text_of("#dataset-state").await;
    assert!(said.contains("was deleted"), "{said}");
    assert!(!stored(&data, &sha), "its train split left storage");
    p.snapshot("dataset-deleted").await;

    // The expert hears of it.
    p.open("/").await;
    p.wait(Locator::Css("#unread")).await;
    p.click("#notifications-link").await;
    let approved = p
        .text_at("//ul[@id='notifications']/li[@data-kind='approved']")
        .await;
    assert!(
        approved.contains("rhea approved version 1 of Arithmetic"),
        "{approved}"
    );
    p.snapshot("review-notifications").await;
    p.click("#mark-all-read").await;
    p.wait(Locator::XPath(
        "//ul[@id='notifications' and not(li[contains(@class, 'unread')])]",
    ))
    .await;

    // 6 · The admin launches a second model, a full fine-tune: not theirs
    // to approve.
    let mut ida = Api::new(&base);
    login(&mut ida, "ida");
    let dataset = ida.call("project", &[("id", &project.to_string())]).json()["datasets"][0]["id"]
        .as_i64()
        .unwrap();
    let config = settings(
        &mut ida,
        dataset,
        serde_json::json!({"num_train_epochs": 1, "method": "full"}),
    );
    let second = launch(&mut ida, dataset, &config);
    assert_eq!(final_state(&mut ida, second), "succeeded");
    let (number2, eval2) = version_of(&mut ida, project, second);
    assert_eq!(number2, 2);
    assert_eq!(final_state(&mut ida, eval2), "succeeded");
    let version2 = ida
        .call(
            "version",
            &[("project_id", &project.to_string()), ("number", "2")],
        )
        .json()["version_id"]
        .as_i64()
        .unwrap();
    assert_eq!(decide(&mut ida, version2, "approved", "looks right"), 403);

    // The reviewer rejects it; approving it again needs a new comment.
    r.open(&format!("{project_path}/versions/2")).await;
    r.click("#decide-reject").await;
    r.fill("#decide-comment", "One pass over the data is too few.")
        .await;
    r.click("#decide-submit").await;
    r.wait(Locator::Css("#version-page[data-state='rejected']"))
        .await;
    r.click("#decide-approve").await;
    r.fill("#decide-comment", "One pass over the data is too few.")
        .await;
    r.click("#decide-submit").await;
    let refused = r
        .text_at("//form[@id='decide-form']//*[contains(., 'new comment')]")
        .await;
    assert!(refused.contains("You rejected this version"), "{refused}");
    r.wait(Locator::Css("#version-page[data-state='rejected']"))
        .await;
    r.click("#decide-approve").await;
    r.fill(
        "#decide-comment",
        "Its answers read well after all: approved for the demo.",
    )
    .await;
    r.click("#decide-submit").await;
    r.wait(Locator::Css("#version-page[data-state='approved']"))
        .await;
    let decided = r.text_of("#decisions").await;
    assert!(
        decided.contains("rhea rejected") && decided.contains("rhea approved"),
        "{decided}"
    );

    // A full fine-tune has no adapter: the merged folder and GGUF only.
    let export = export_of(&mut ida, project, 2);
    assert_eq!(final_state(&mut ida, export), "succeeded");
    let page = ida
        .call(
            "version",
            &[("project_id", &project.to_string()), ("number", "2")],
        )
        .json();
    let formats: Vec<&str> = page["publishing"]["downloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["format"].as_str().unwrap())
        .collect();
    assert_eq!(formats, ["merged", "gguf-f16", "gguf-q8_0"], "{page}");
    let card = page["publishing"]["card"].as_str().unwrap();
    assert!(card.contains("library_name: transformers"), "{card}");
    let href = page["publishing"]["downloads"][1]["href"].as_str().unwrap();
    let (status, bytes) = ida.download(href, None);
    assert_eq!(status, 200);
    let files = untar(&bytes);
    assert_eq!(&files[1].1[..4], b"GGUF");

    // 7 · Deleting and purging. A job the admin cancelled: the expert
    // deletes it from its page and lands on the project's, without it.
    let config = settings(
        &mut ida,
        dataset,
        serde_json::json!({"num_train_epochs": 1}),
    );
    let third = launch(&mut ida, dataset, &config);
    let r_cancel = ida.call("cancel_job", &[("id", &third.to_string())]);
    assert_eq!(r_cancel.status, 200, "{}", r_cancel.body);
    assert_eq!(final_state(&mut ida, third), "cancelled");
    p.open(&format!("{project_path}/jobs/{third}")).await;
    p.hydrated().await;
    p.click("#delete-job-button").await;
    p.wait(Locator::Css("#delete-job-question")).await;
    p.snapshot("job-delete-confirm").await;
    p.click("#delete-job-confirm").await;
    p.wait(Locator::Css("#project-name")).await;
    assert!(
        p.c.find(Locator::Css(&format!(
            "a[href='{project_path}/jobs/{third}']"
        )))
        .await
        .is_err(),
        "the deleted job is not listed"
    );
    // The project cannot go while its versions are approved: it says so.
    p.click("#delete-project summary").await;
    p.fill("#delete-project-confirm", "Arithmetic").await;
    p.click("#delete-project-button").await;
    let why = p.text_of("#delete-project-error").await;
    assert!(why.contains("approved"), "{why}");
    p.snapshot("project-delete-refused").await;

    // The admin purges the team's storage: the ended jobs' checkpoints go,
    // the published downloads stay whole.
    let adapter = page_of(&mut ada, project, number)["publishing"]["downloads"][0].clone();
    r.click("#sign-out").await;
    sign_in(r, "ida").await;
    r.open("/admin").await;
    r.hydrated().await;
    let team = ida.call("project", &[("id", &project.to_string())]).json()["project"]["team"]["id"]
        .as_i64()
        .unwrap();
    r.click(&format!("#purge-{team}")).await;
    let purged = r.text_of("#purge-result").await;
    assert!(purged.contains("checkpoints dropped"), "{purged}");
    assert!(!purged.starts_with("Purged: 0 checkpoints"), "{purged}");
    r.snapshot("admin-purged").await;
    let (status, bytes) = ada.download(adapter["href"].as_str().unwrap(), None);
    assert_eq!(status, 200);
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&bytes)),
        adapter["sha256"].as_str().unwrap()
    );
}

/// The version page's data, as the browser gets it.
fn page_of(api: &mut Api, project: i64, number: u64) -> serde_json::Value {
    api.call(
        "version",
        &[
            ("project_id", &project.to_string()),
            ("number", &number.to_string()),
        ],
    )
    .json()
}
