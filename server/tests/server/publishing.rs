//! Downloads of approved versions over HTTP: refused (403) before the
//! approval and again after a rejection, hidden (404) from other teams,
//! one export job per approval however often the scheduler asks, the
//! archive a valid tar whose SHA-256 is the one shown, ranges (206, the
//! last n bytes, 416 past the end), and each download in the audit log.
//! (The export itself, run by the engine, is in the e2e tests.)

use crate::common::*;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use hone_server::entity::audit::{self, AuditAction};
use hone_server::entity::job::{self, JobKind};
use hone_server::entity::model_version;
use hone_server::publishing::{manifest, FORMATS};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use sha2::{Digest, Sha256};

async fn signed_in<'a>(app: &'a TestApp, who: &str) -> Client<'a> {
    let mut c = Client::new(app);
    let r = c.login(who, PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK, "{who}: {}", r.body);
    c
}

async fn get(c: &mut Client<'_>, path: &str, range: Option<&str>) -> Resp {
    let mut req = Request::get(path);
    if let Some(r) = range {
        req = req.header(header::RANGE, r);
    }
    c.send(req, Body::empty()).await
}

/// `(path, bytes)` of each file in a ustar archive.
fn untar(mut b: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    while b.len() >= 512 && b[..512].iter().any(|x| *x != 0) {
        let h = &b[..512];
        let cut = |s: &[u8]| {
            String::from_utf8(s.iter().take_while(|x| **x != 0).copied().collect()).unwrap()
        };
        let (name, prefix) = (cut(&h[..100]), cut(&h[345..500]));
        let size = usize::from_str_radix(cut(&h[124..135]).trim(), 8).unwrap();
        let path = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        out.push((path, b[512..512 + size].to_vec()));
        b = &b[512 + size.div_ceil(512) * 512..];
    }
    assert_eq!(b, &[0u8; 1024][..], "two zero blocks end the archive");
    out
}

#[tokio::test]
async fn approved_versions_download_as_checked_archives_in_ranges() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        let (version, _, _) = evaluated_version(&app, w.alpha_project, "expert").await;
        let path = format!("/api/versions/{version}/downloads/adapter");
        let mut expert = signed_in(&app, "expert").await;
        let mut reviewer = signed_in(&app, "reviewer").await;
        let mut outsider = signed_in(&app, "outsider").await;

        // Before approval: refused, saying why; nothing to export.
        let r = get(&mut expert, &path, None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
        assert!(r.body.contains("not approved"), "{}", r.body);
        assert_eq!(app.services.open_exports().await.unwrap(), 0);

        let said = reviewer
            .call(
                "decide",
                &[
                    ("version_id", &version.to_string()),
                    ("decision", "approved"),
                    ("comment", "Good answers."),
                ],
            )
            .await;
        assert_eq!(said.status, StatusCode::OK, "{}", said.body);
        // Approved, not yet exported: not there yet.
        let r = get(&mut expert, &path, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
        assert!(r.body.contains("being exported"), "{}", r.body);

        // One export job, however many rounds ask.
        let opened = futures::future::join_all((0..3).map(|_| app.services.open_exports())).await;
        let total: usize = opened.into_iter().map(Result::unwrap).sum();
        assert_eq!(total, 1);
        assert_eq!(app.services.open_exports().await.unwrap(), 0);
        let v = model_version::Entity::find_by_id(version)
            .one(&app.services.db)
            .await
            .unwrap()
            .unwrap();
        let export = job::Entity::find_by_id(v.export_job_id.unwrap())
            .one(&app.services.db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(export.kind, JobKind::Export);

        // The card is written from the facts.
        let card = app.services.model_card(&v).await.unwrap();
        assert!(
            card.starts_with("---\nbase_model: \"hone-demo\"\nlibrary_name: peft\n"),
            "{card}"
        );
        assert!(
            card.contains(&format!("- sha256:{}", v.dataset_sha256)),
            "{card}"
        );
        assert!(card.contains("reviewer approved on "), "{card}");
        assert!(card.contains("“Good answers.”"), "{card}");
        assert!(card.contains("| `learning_rate` |"), "{card}");

        // Package files as the export does (here from stored blobs).
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        let mut contents = Vec::new();
        for (name, len) in [
            ("adapter_config.json", 700usize),
            ("adapter_model.safetensors", 70_001),
        ] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let p = dir.path().join(name);
            std::fs::write(&p, &bytes).unwrap();
            let s = app.services.blobs.put_file(&p).await.unwrap();
            files.push((name.to_owned(), s.size, s.key));
            contents.push((name.to_owned(), bytes));
        }
        std::fs::write(dir.path().join("README.md"), &card).unwrap();
        let c = app
            .services
            .blobs
            .put_file(&dir.path().join("README.md"))
            .await
            .unwrap();
        let m = manifest(
            "Support bot",
            v.number,
            "adapter",
            1_700_000_000,
            &c.key,
            c.size,
            files,
        );
        let row = app.services.package(&v, "adapter", m).await.unwrap();
        assert_eq!(
            row.file_name,
            format!("Support_bot-v{}-adapter.tar", v.number)
        );

        let whole = get(&mut expert, &path, None).await;
        assert_eq!(whole.status, StatusCode::OK, "{}", whole.body);
        let sha = hex::encode(Sha256::digest(&whole.bytes));
        assert_eq!(sha, row.sha256);
        assert_eq!(whole.headers["x-checksum-sha256"], sha.as_str());
        assert_eq!(whole.headers[header::ACCEPT_RANGES], "bytes");
        assert_eq!(whole.bytes.len() as i64, row.size);
        let entries = untar(&whole.bytes);
        let root = format!("Support_bot-v{}-adapter", v.number);
        assert_eq!(entries[0].0, format!("{root}/README.md"));
        assert_eq!(entries[0].1, card.as_bytes());
        for ((p, b), (name, want)) in entries[1..].iter().zip(&contents) {
            assert_eq!(p, &format!("{root}/{name}"));
            assert_eq!(b, want);
        }

        // Ranges: a middle piece, the last bytes, past the end.
        let part = get(&mut expert, &path, Some("bytes=1000-70999")).await;
        assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(part.bytes, whole.bytes[1000..71000]);
        assert_eq!(
            part.headers[header::CONTENT_RANGE],
            format!("bytes 1000-70999/{}", row.size).as_str()
        );
        let tail = get(&mut expert, &path, Some("bytes=-100")).await;
        assert_eq!(tail.bytes, whole.bytes[whole.bytes.len() - 100..]);
        let resumed = get(&mut expert, &path, Some("bytes=512-")).await;
        let mut joined = whole.bytes[..512].to_vec();
        joined.extend_from_slice(&resumed.bytes);
        assert_eq!(hex::encode(Sha256::digest(&joined)), row.sha256);
        let past = get(&mut expert, &path, Some(&format!("bytes={}-", row.size))).await;
        assert_eq!(past.status, StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(
            past.headers[header::CONTENT_RANGE],
            format!("bytes */{}", row.size).as_str()
        );

        // Another team's: as if it did not exist. Unknown formats: 404.
        let theirs = get(&mut outsider, &path, None).await;
        assert_eq!(theirs.status, StatusCode::NOT_FOUND);
        let odd = get(
            &mut expert,
            &format!("/api/versions/{version}/downloads/zip"),
            None,
        )
        .await;
        assert_eq!(odd.status, StatusCode::NOT_FOUND);
        assert!(!FORMATS.contains(&"zip"));

        // Each download from its start is in the audit log, with its hash.
        let log = audit::Entity::find()
            .filter(audit::Column::Action.eq(AuditAction::ModelDownloaded))
            .all(&app.services.db)
            .await
            .unwrap();
        assert_eq!(
            log.len(),
            1,
            "the whole download; ranges that resume are not new downloads"
        );
        assert_eq!(log[0].actor, "expert");
        assert!(log[0].detail.contains(&row.sha256), "{}", log[0].detail);

        // The page lists it with its checksum and shows the card.
        let page = expert
            .call(
                "version",
                &[
                    ("project_id", &w.alpha_project.to_string()),
                    ("number", &v.number.to_string()),
                ],
            )
            .await
            .json();
        assert_eq!(page["publishing"]["downloads"][0]["sha256"], row.sha256);
        assert!(page["publishing"]["export_job"].is_array(), "{page}");

        // A rejection closes the downloads again.
        let said = reviewer
            .call(
                "decide",
                &[
                    ("version_id", &version.to_string()),
                    ("decision", "rejected"),
                    ("comment", "A wrong answer on line 2."),
                ],
            )
            .await;
        assert_eq!(said.status, StatusCode::OK, "{}", said.body);
        let r = get(&mut expert, &path, None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    })
    .await;
}
