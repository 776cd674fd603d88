//! `POST /api/projects/{id}/datasets`: a new, immutable dataset version.
//!
//! The body is the source file (streamed to storage like any upload); the
//! query names the version and gives the split settings plus the split
//! counts the browser computed with the same `hone-dataset` code. The save
//! answers at once (202) with the version in state `checking`: the server
//! re-checks and re-splits the stored file itself off the request — it
//! never trusts the client — in the dataset-check task
//! ([`super::check`]), a few saves at a time. The version becomes `ready`
//! once its three split files are written, or `refused` with the findings
//! when there are errors the person did not choose to leave out, or when
//! the server's counts differ from the browser's.

use super::summary;
use crate::accounts::SignedIn;
use crate::entity::dataset_version::{self, DatasetState};
use crate::entity::file;
use crate::error::Result;
use crate::state::{now, Services};
use crate::storage::{self, Stored};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use hone_app::api::AppError;
use hone_dataset::tokens::ChatTokenizer;
use hone_dataset::{Checker, Columns, Options, Ratios, Report, Split, SplitWriter};
use sea_orm::{ActiveModelTrait, Set, TransactionTrait};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The save's query; kept with the version (JSON) for its check.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct NewDataset {
    name: String,
    seed: String,
    ratios: String,
    /// The browser's split counts, "train,validation,test".
    expect: String,
    #[serde(default)]
    drop_rejected: bool,
    prompt_column: Option<String>,
    response_column: Option<String>,
    category_column: Option<String>,
    /// The base model whose tokenizer counts tokens (default: the demo).
    model: Option<String>,
}

/// The query, parsed: raw input becomes typed values here, once.
pub(crate) struct Settings {
    pub name: String,
    pub seed: u64,
    pub ratios: Ratios,
    pub expect: [u64; 3],
    pub drop_rejected: bool,
    pub options: Options,
    pub model: String,
}

pub(crate) fn parse(q: NewDataset) -> Result<Settings, AppError> {
    let name = crate::accounts::password::parse_name(&q.name, "name", "dataset")?;
    let seed = q.seed.trim().parse::<u64>().map_err(|_| {
        AppError::invalid(
            "seed",
            "The seed is a whole number from 0 to 18446744073709551615.",
        )
    })?;
    let ratios = q
        .ratios
        .parse::<Ratios>()
        .map_err(|e| AppError::invalid("ratios", format!("Split: {e}.")))?;
    let expect: Vec<u64> = q
        .expect
        .split(',')
        .map(|p| p.trim().parse())
        .collect::<Result<_, _>>()
        .map_err(|_| AppError::invalid("expect", "expect is three counts, e.g. 80,10,10."))?;
    let [train, validation, test] = expect[..] else {
        return Err(AppError::invalid(
            "expect",
            "expect is three counts, e.g. 80,10,10.",
        ));
    };
    let model = q
        .model
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| crate::models::DEMO.to_owned());
    let mut options = Options::default();
    if let (Some(prompt), Some(response)) = (q.prompt_column, q.response_column) {
        options = options.with_columns(Columns {
            prompt,
            response,
            category: q.category_column,
        });
    }
    Ok(Settings {
        name,
        seed,
        ratios,
        expect: [train, validation, test],
        drop_rejected: q.drop_rejected,
        options,
        model,
    })
}

/// The tokenizer that counts tokens as training on `model` will, and the
/// model's context length (examples longer than it are findings).
pub(crate) async fn measure_for(
    s: &Services,
    model: &str,
) -> Result<(Arc<ChatTokenizer>, Option<u32>), AppError> {
    let models_dir = s.config.models_dir.clone();
    let model = model.to_owned();
    let wanted = model.clone();
    let found = tokio::task::spawn_blocking(move || {
        let files = crate::models::tokenizer_files(&models_dir, &wanted)?;
        Ok::<_, crate::models::ModelError>((
            crate::models::chat_tokenizer(&files)?,
            files.context_length,
        ))
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "the tokenizer task failed");
        AppError::Internal
    })?;
    let (tokenizer, context) = found.map_err(|e| match e {
        crate::models::ModelError::Unknown(_) => AppError::invalid("model", e.to_string()),
        other => {
            // The details name files on the server: the log gets them,
            // the person a sentence.
            tracing::error!(error = %other, "a model's tokenizer cannot be used");
            AppError::invalid(
                "model",
                format!("The model {model:?} cannot be used for counting tokens: its tokenizer files are missing or unreadable. An administrator can find the details in the server's log."),
            )
        }
    })?;
    Ok((Arc::new(tokenizer), context))
}

/// A version of an already stored file, made off any request (the API's
/// files and the splits its jobs ask for): the same checks and split as
/// [`create`], with no browser to compare counts with and no choice to
/// leave examples out — a file with errors is refused with its findings.
pub(crate) struct FromFile<'a> {
    pub file: &'a file::Model,
    pub created_by: i64,
    pub name: String,
    pub seed: u64,
    pub ratios: Ratios,
    pub model: String,
}

/// Why a file cannot become a version: the findings, errors first.
#[derive(Debug)]
pub(crate) struct Refused {
    pub message: String,
    pub findings: Vec<hone_dataset::Finding>,
}

pub(crate) async fn version_from_file(
    s: &Services,
    from: FromFile<'_>,
) -> Result<Result<dataset_version::Model, Refused>> {
    let (tokenizer, context_length) = measure_for(s, &from.model).await?;
    let options = Options {
        max_tokens: context_length,
        ..Options::default()
    };
    let report = check_blob(s, &from.file.storage_key, &options, tokenizer.clone()).await?;
    let mut findings: Vec<_> = report.findings.clone();
    findings.sort_by_key(|f| !f.is_error());
    findings.retain(|f| f.is_error());
    findings.truncate(200);
    if report.examples == 0 {
        return Ok(Err(Refused {
            message: "The file has no usable examples.".into(),
            findings,
        }));
    }
    if report.has_errors() {
        return Ok(Err(Refused {
            message: format!(
                "The checks found {} errors in {} examples.",
                report.errors, report.rejected
            ),
            findings,
        }));
    }
    let plan = report.plan(from.seed, from.ratios);
    let counts = Report::split_counts(&plan);
    let splits = write_splits(s, &from.file.storage_key, &options, tokenizer, plan).await?;
    let settings = Recorded {
        name: from.name,
        seed: from.seed,
        ratios: from.ratios,
        drop_rejected: false,
        model: from.model,
    };
    let row = record(
        &s.db,
        from.file.project_id,
        from.created_by,
        from.file.id,
        &report,
        &settings,
        counts,
        splits,
    )
    .await?;
    Ok(Ok(row))
}

/// What a version records of how it was made.
pub(crate) struct Recorded {
    pub name: String,
    pub seed: u64,
    pub ratios: Ratios,
    pub drop_rejected: bool,
    pub model: String,
}

/// What the check found and wrote, as the version's columns (state
/// `ready`): everything but who saved it from which file.
pub(crate) fn checked_columns(
    report: &Report,
    settings: &Recorded,
    counts: [u64; 3],
    [train, validation, test]: [Stored; 3],
) -> dataset_version::ActiveModel {
    let finding_counts: serde_json::Map<String, serde_json::Value> = report
        .counts
        .iter()
        .map(|(code, n)| (code.as_str().to_owned(), (*n).into()))
        .collect();
    dataset_version::ActiveModel {
        name: Set(settings.name.clone()),
        format: Set(report.format.map_or("unknown", |f| f.label()).to_owned()),
        examples: Set(report.examples as i64),
        rejected: Set(report.rejected as i64),
        dropped_rejected: Set(settings.drop_rejected && report.rejected > 0),
        errors: Set(report.errors as i64),
        warnings: Set(report.warnings as i64),
        finding_counts: Set(serde_json::Value::Object(finding_counts).to_string()),
        seed: Set(settings.seed.to_string()),
        ratios: Set(ratios_text(settings.ratios)),
        train_count: Set(counts[0] as i64),
        validation_count: Set(counts[1] as i64),
        test_count: Set(counts[2] as i64),
        train_key: Set(train.key),
        validation_key: Set(validation.key),
        test_key: Set(test.key),
        train_sha256: Set(train.sha256),
        validation_sha256: Set(validation.sha256),
        test_sha256: Set(test.sha256),
        base_model: Set(Some(settings.model.clone())),
        stats: Set(serde_json::to_string(&report.stats).ok()),
        state: Set(DatasetState::Ready),
        ..Default::default()
    }
}

fn ratios_text(r: Ratios) -> String {
    format!("{},{},{}", r.0[0], r.0[1], r.0[2])
}

/// The version's row, once its split files are written.
#[allow(clippy::too_many_arguments)]
async fn record(
    db: &impl sea_orm::ConnectionTrait,
    project_id: i64,
    created_by: i64,
    source_file_id: i64,
    report: &Report,
    settings: &Recorded,
    counts: [u64; 3],
    splits: [Stored; 3],
) -> Result<dataset_version::Model> {
    let mut row = checked_columns(report, settings, counts, splits);
    row.project_id = Set(project_id);
    row.source_file_id = Set(source_file_id);
    row.created_by = Set(created_by);
    row.created_at = Set(now());
    Ok(row.insert(db).await?)
}

/// The first pass. Checking (and tokenizing) is CPU work that can take
/// minutes on a large file, so it runs on a blocking thread fed chunk by
/// chunk: the server's async workers keep answering other requests.
pub(crate) async fn check_blob(
    s: &Services,
    key: &str,
    options: &Options,
    measure: Arc<ChatTokenizer>,
) -> Result<Report> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(2);
    let options = options.clone();
    let work = tokio::task::spawn_blocking(move || {
        let mut checker = Checker::new(options, Some(&*measure));
        while let Some(chunk) = rx.blocking_recv() {
            checker.feed(&chunk);
        }
        checker.finish()
    });
    let mut stream = s.blobs.stream(key).await?;
    while let Some(chunk) = stream.next().await {
        if tx.send(chunk?).await.is_err() {
            break;
        }
    }
    drop(tx);
    Ok(work.await?)
}

/// The second pass: each kept example, normalised, into its split's blob.
/// The splitting runs on a blocking thread (as the check does); its lines
/// come back per chunk and are written here.
pub(crate) async fn write_splits(
    s: &Services,
    key: &str,
    options: &Options,
    measure: Arc<ChatTokenizer>,
    plan: Vec<Split>,
) -> Result<[Stored; 3]> {
    let mut writers = [
        s.blobs.writer().await?,
        s.blobs.writer().await?,
        s.blobs.writer().await?,
    ];
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(2);
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<[Vec<u8>; 3]>(2);
    let options = options.clone();
    let work = tokio::task::spawn_blocking(move || {
        let mut split = SplitWriter::new(options, Some(&*measure), plan);
        let mut lines = <[Vec<u8>; 3]>::default();
        while let Some(chunk) = rx.blocking_recv() {
            split.feed(&chunk, &mut |which, line| {
                lines[which as usize].extend_from_slice(line.as_bytes())
            });
            if out_tx.blocking_send(std::mem::take(&mut lines)).is_err() {
                return;
            }
        }
        split.finish(&mut |which, line| lines[which as usize].extend_from_slice(line.as_bytes()));
        let _ = out_tx.blocking_send(lines);
    });
    let mut stream = s.blobs.stream(key).await?;
    let feed = async move {
        while let Some(chunk) = stream.next().await {
            if tx.send(chunk?).await.is_err() {
                break;
            }
        }
        Ok::<(), storage::Error>(())
    };
    let write = async {
        while let Some(lines) = out_rx.recv().await {
            for (w, l) in writers.iter_mut().zip(lines) {
                if !l.is_empty() {
                    w.write(&l);
                }
            }
        }
    };
    let (fed, ()) = tokio::join!(feed, write);
    let joined = work.await;
    if let Err(e) = fed {
        for w in writers {
            w.abort().await;
        }
        return Err(e.into());
    }
    joined?;
    let [train, validation, test] = writers;
    Ok([
        train.finish().await?,
        validation.finish().await?,
        test.finish().await?,
    ])
}

#[tracing::instrument(skip_all, fields(project_id))]
pub async fn create(
    State(s): State<Arc<Services>>,
    SignedIn(u): SignedIn,
    Path(project_id): Path<i64>,
    Query(query): Query<NewDataset>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let p = s.writable_project(&u, project_id).await?;
    let _slot = s.upload_slot()?;
    let settings = parse(query.clone())?;
    // The model must count tokens now, as it will for the check: an
    // unknown or unusable one is refused before the upload.
    measure_for(&s, &settings.model).await?;
    let source_name = crate::http::file_name(&headers)?;
    let limit = s.config.max_upload_bytes;
    crate::http::check_declared_size(&headers, limit)?;
    let source = s.blobs.put_stream(body.into_data_stream(), limit).await?;
    let tx = s.db.begin().await?;
    let source_row = file::ActiveModel {
        project_id: Set(p.id),
        name: Set(source_name.clone()),
        size: Set(source.size as i64),
        sha256: Set(source.sha256.clone()),
        storage_key: Set(source.key.clone()),
        uploaded_by: Set(u.id),
        created_at: Set(now()),
        ..Default::default()
    }
    .insert(&tx)
    .await?;
    let row = dataset_version::ActiveModel {
        project_id: Set(p.id),
        name: Set(settings.name.clone()),
        source_file_id: Set(source_row.id),
        format: Set(String::new()),
        examples: Set(0),
        rejected: Set(0),
        dropped_rejected: Set(settings.drop_rejected),
        errors: Set(0),
        warnings: Set(0),
        finding_counts: Set("{}".into()),
        seed: Set(settings.seed.to_string()),
        ratios: Set(ratios_text(settings.ratios)),
        train_count: Set(0),
        validation_count: Set(0),
        test_count: Set(0),
        train_key: Set(String::new()),
        validation_key: Set(String::new()),
        test_key: Set(String::new()),
        train_sha256: Set(String::new()),
        validation_sha256: Set(String::new()),
        test_sha256: Set(String::new()),
        created_by: Set(u.id),
        created_at: Set(now()),
        base_model: Set(Some(settings.model.clone())),
        stats: Set(None),
        state: Set(DatasetState::Checking),
        request: Set(Some(serde_json::to_string(&query)?)),
        refusal: Set(None),
        check_started_at: Set(None),
        ..Default::default()
    }
    .insert(&tx)
    .await?;
    tx.commit().await?;
    s.datasets_wake.notify_one();
    tracing::info!(user = %u.username, project = p.id, dataset = row.id, bytes = source.size, "dataset version saved; its check is queued");
    let ahead = s.checks_ahead(row.id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(summary(&row, source_name, u.username, ahead)),
    )
        .into_response())
}
