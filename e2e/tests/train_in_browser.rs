//! A domain expert trains a model from the browser, on the demo model:
//! saves a dataset, opens "Train a model", sees whether it fits and how
//! long it takes, launches LoRA, watches the loss chart gain points while
//! the job runs, finds the adapter's files listed when it succeeds — and
//! cancels a second job, which checkpoints and stops.

// Tests fail loudly: unwrapping is the point here.
#![allow(clippy::unwrap_used)]

use fantoccini::Locator;
use hone_e2e::scenario::{chat_examples, create_user, PASSWORD};
use hone_e2e::{browser, start_chromedriver, start_server, Page};
use std::time::Duration;

/// Waits longer than `Page::wait`: a training run takes a while.
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

async fn points(p: &Page, chart: &str) -> u64 {
    p.wait(Locator::Css(chart))
        .await
        .attr("data-points")
        .await
        .unwrap()
        .and_then(|n| n.parse().ok())
        .unwrap()
}

async fn state(p: &Page) -> String {
    p.wait(Locator::Css("#job-state"))
        .await
        .attr("data-state")
        .await
        .unwrap()
        .unwrap_or_default()
}

#[tokio::test]
async fn an_expert_trains_a_model_and_watches_it_learn() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    create_user(&data, "ada");
    let (_server, base) = start_server(&data);
    let (_driver, port) = start_chromedriver();
    let c = browser(port, &tmp.path().join("profile")).await;
    let p = Page { c, base };

    p.open("/login").await;
    p.fill("#username", "ada").await;
    p.fill("#password", PASSWORD).await;
    p.click("#sign-in").await;
    p.wait(Locator::XPath("//span[@id='who' and contains(., 'ada')]"))
        .await;
    p.fill("#project-name", "Arithmetic").await;
    p.click("#create-project").await;
    p.wait(Locator::LinkText("Arithmetic"))
        .await
        .click()
        .await
        .unwrap();
    p.wait(Locator::XPath(
        "//h1[@id='project-name' and .='Arithmetic']",
    ))
    .await;
    p.hydrated().await;

    // 1 · Data: check and save, in the browser.
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

    // 2 · Models: "Train a model" on the saved version.
    p.wait(Locator::Css("a.train-link"))
        .await
        .click()
        .await
        .unwrap();
    p.wait(Locator::Css("#launch-page")).await;
    p.hydrated().await;
    // Does it fit? How long? Answered before launching.
    p.wait(Locator::Css("#fit[data-fits='true']")).await;
    let eta = p.text_of("#eta-range").await;
    assert!(eta.to_lowercase().contains("about"), "{eta}");
    p.snapshot("launch").await;
    // Long enough to watch: 40 passes over the data.
    p.fill("#setting-num_train_epochs", "40").await;
    p.wait(Locator::Css("#fit[data-fits='true'][aria-busy='false']"))
        .await;
    p.click("#launch").await;
    p.wait(Locator::Css("#job-page")).await;
    p.hydrated().await;
    assert!(p.path().await.contains("/jobs/"), "{}", p.path().await);

    // The loss chart grows while the job runs (events over SSE, no reload).
    wait_long(&p, "//*[@id='job-state' and @data-state='running']").await;
    wait_long(&p, "//*[@id='chart-loss' and number(@data-points) >= 1]").await;
    let before = points(&p, "#chart-loss").await;
    wait_long(
        &p,
        &format!("//*[@id='chart-loss' and number(@data-points) > {before}]"),
    )
    .await;
    assert_eq!(state(&p).await, "running", "the chart grew while running");
    p.snapshot("job-running").await;

    // It succeeds by itself; the adapter's files are listed.
    wait_long(&p, "//*[@id='job-state' and @data-state='succeeded']").await;
    let total = points(&p, "#chart-loss").await;
    assert!(total > before, "{total} > {before}");
    // The page reloads its data after a state change: the files come then.
    wait_long(&p, "//table[@id='artifacts']//tr[@class='artifact']").await;
    let rows =
        p.c.find_all(Locator::Css("#artifacts tr.artifact"))
            .await
            .unwrap();
    let mut files = Vec::new();
    for r in &rows {
        files.push(r.text().await.unwrap());
    }
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(
        files
            .iter()
            .any(|f| f.contains("adapter/adapter_model.safetensors")),
        "{files:?}"
    );
    assert!(
        files.iter().all(|f| f
            .split_whitespace()
            .any(|w| w.len() == 64 && w.chars().all(|c| c.is_ascii_hexdigit()))),
        "each file with its SHA-256: {files:?}"
    );
    p.snapshot("job-succeeded").await;

    // A second job, cancelled from its page: it checkpoints, then stops.
    let job_path = p.path().await;
    let project = job_path.split("/jobs/").next().unwrap().to_owned();
    p.open(&project).await;
    p.wait(Locator::Css("a.train-link"))
        .await
        .click()
        .await
        .unwrap();
    p.wait(Locator::Css("#launch-page")).await;
    p.hydrated().await;
    p.fill("#setting-num_train_epochs", "1000").await;
    p.wait(Locator::Css("#fit[data-fits='true'][aria-busy='false']"))
        .await;
    p.click("#launch").await;
    p.wait(Locator::Css("#job-page")).await;
    p.hydrated().await;
    wait_long(&p, "//*[@id='chart-loss' and number(@data-points) >= 2]").await;
    p.click("#cancel").await;
    p.click("#cancel-confirm").await;
    wait_long(&p, "//*[@id='job-state' and @data-state='cancelled']").await;
    // The project page lists both, with their states.
    p.open(&project).await;
    p.wait(Locator::Css(".state-succeeded")).await;
    p.wait(Locator::Css(".state-cancelled")).await;
    p.snapshot("project-jobs").await;
}
