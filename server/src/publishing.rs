//! Publishing approved model versions: the export job (the merged
//! Hugging Face folder and GGUF files, made on a worker once a version is
//! approved — [`Services::open_exports`], each scheduler round), the model
//! card written from facts ([`Services::model_card`]), and the downloads:
//! one tar archive per format, whose layout is computed from the stored
//! blobs it contains ([`Manifest`], [`Layout`]) so it is streamed (never
//! built in memory or on disk), served in ranges (`Range: bytes=…`, 206,
//! 416 past the end) and has one SHA-256, computed once when it is made.

use crate::entity::job::{self, JobKind, StoredState};
use crate::entity::review::{self, Decision as StoredDecision};
use crate::entity::{dataset_version, download, job_artifact, model_version, project};
use crate::error::{Error, Result};
use crate::jobs::{queue, state_event, MAX_ATTEMPTS};
use crate::state::{now, Services};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use hone_app::api::JobState;
use hone_protocol::{JobSpec, Method, ModelConfig};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// The download formats, in the order pages list them.
pub const FORMATS: [&str; 4] = ["adapter", "merged", "gguf-f16", "gguf-q8_0"];

/// What an export job makes: [`JobKind::Export`]'s `spec`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExportSpec {
    pub version_id: i64,
    pub base_model: String,
    pub method: Method,
    pub train_job: i64,
}

/// One archive: its top folder, its files' time, and each file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub root: String,
    pub mtime: i64,
    pub entries: Vec<Entry>,
}

/// A file of an archive: its path under the root and its stored blob.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub path: String,
    pub size: u64,
    pub key: String,
}

/// A piece of an archive.
#[derive(Clone, Debug)]
enum Segment {
    /// Tar headers and padding.
    Bytes(Bytes),
    /// A stored file's bytes, whole.
    Blob { key: String, size: u64 },
}

impl Segment {
    fn len(&self) -> u64 {
        match self {
            Segment::Bytes(b) => b.len() as u64,
            Segment::Blob { size, .. } => *size,
        }
    }
}

/// An archive as its pieces, each with its offset.
#[derive(Clone, Debug)]
pub struct Layout {
    segments: Vec<(u64, Segment)>,
    pub size: u64,
}

const BLOCK: usize = 512;

/// A ustar header block for a regular file (mode 0644, owner 0, the
/// given time). Names longer than 100 bytes are split into ustar's prefix;
/// sizes of 8 GiB and more use the base-256 size GNU tar, bsdtar and
/// Python's tarfile read.
fn tar_header(name: &str, size: u64, mtime: i64) -> Result<[u8; BLOCK]> {
    let mut h = [0u8; BLOCK];
    let (prefix, base) = if name.len() <= 100 {
        ("", name)
    } else {
        let cut = name[..name.len().min(156)]
            .rfind('/')
            .filter(|&i| name.len() - i - 1 <= 100 && i <= 155)
            .ok_or_else(|| Error::internal(format!("archive path too long for tar: {name}")))?;
        (&name[..cut], &name[cut + 1..])
    };
    h[..base.len()].copy_from_slice(base.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    if size < 8 << 30 {
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    } else {
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    h[136..148].copy_from_slice(format!("{:011o}\0", mtime.max(0)).as_bytes());
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    Ok(h)
}

/// The archive of `m`: for each entry its header, its bytes and the
/// padding to a block, then two zero blocks.
pub fn layout(m: &Manifest) -> Result<Layout> {
    let mut segments = Vec::new();
    let mut at = 0u64;
    let mut pending: Vec<u8> = Vec::new();
    for e in &m.entries {
        pending.extend_from_slice(&tar_header(
            &format!("{}/{}", m.root, e.path),
            e.size,
            m.mtime,
        )?);
        let head = Segment::Bytes(Bytes::from(std::mem::take(&mut pending)));
        let n = head.len();
        segments.push((at, head));
        at += n;
        segments.push((
            at,
            Segment::Blob {
                key: e.key.clone(),
                size: e.size,
            },
        ));
        at += e.size;
        let pad = (BLOCK as u64 - e.size % BLOCK as u64) % BLOCK as u64;
        pending.resize(pad as usize, 0);
    }
    pending.extend_from_slice(&[0u8; 2 * BLOCK]);
    let n = pending.len() as u64;
    segments.push((at, Segment::Bytes(Bytes::from(pending))));
    Ok(Layout {
        segments,
        size: at + n,
    })
}

/// Bytes `start..end` of the archive, streamed piece by piece; blobs are
/// read in ranges, never whole into memory.
pub fn archive_stream(
    blobs: crate::storage::BlobStore,
    layout: &Layout,
    start: u64,
    end: u64,
) -> impl Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send + 'static {
    let parts: Vec<(Segment, u64, u64)> = layout
        .segments
        .iter()
        .filter_map(|(offset, seg)| {
            let (a, b) = (*offset, offset + seg.len());
            let (from, to) = (start.max(a), end.min(b));
            (from < to).then(|| (seg.clone(), from - a, to - a))
        })
        .collect();
    futures::stream::iter(parts).flat_map(move |(seg, from, to)| match seg {
        Segment::Bytes(b) => futures::stream::once(futures::future::ready(Ok(
            b.slice(from as usize..to as usize)
        )))
        .boxed(),
        Segment::Blob { key, .. } => {
            let blobs = blobs.clone();
            futures::stream::once(async move { blobs.stream_range(&key, from, to).await })
                .try_flatten()
                .map_err(std::io::Error::other)
                .boxed()
        }
    })
}

/// What a name may hold in a file name: letters, digits, `-` and `_`.
pub fn safe_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Bytes a merge holds: the model in f32 once, plus its largest tensor
/// being written (the merged folder and GGUF are streamed), with a margin.
pub fn merge_bytes(c: &ModelConfig) -> u64 {
    let (h, i, v) = (
        c.hidden_size as u64,
        c.intermediate_size as u64,
        c.vocab_size as u64,
    );
    let q = (c.num_attention_heads * c.head_dim) as u64;
    let kv = (c.num_key_value_heads * c.head_dim) as u64;
    let layer = h * q * 2 + h * kv * 2 + 3 * h * i + 2 * h;
    let embed = v * h * if c.tie_word_embeddings { 1 } else { 2 };
    let params = embed + layer * c.num_hidden_layers as u64 + h;
    // Measured (scripts/bench-export, 104 M parameters): peak 1.09× the
    // f32 model; the margin covers the allocator and the runtime.
    (4 * params + 4 * (v * h).max(h * i)) * 115 / 100 + (64 << 20)
}

impl Services {
    /// Queues an export job for every approved version that has none (at
    /// most 20 a call); returns how many. Run by the scheduler's leader.
    pub async fn open_exports(&self) -> Result<usize> {
        let candidates = model_version::Entity::find()
            .filter(model_version::Column::ExportJobId.is_null())
            .filter(model_version::Column::EvalJobId.is_not_null())
            .filter(model_version::Column::DeletedAt.is_null())
            .order_by_asc(model_version::Column::Id)
            .all(&self.db)
            .await?;
        let mut opened = 0;
        for v in candidates {
            if opened == 20 {
                break;
            }
            let has_approval = review::Entity::find()
                .filter(review::Column::VersionId.eq(v.id))
                .filter(review::Column::Decision.eq(StoredDecision::Approved))
                .one(&self.db)
                .await?
                .is_some();
            if !has_approval || !self.approved(&v).await? {
                continue;
            }
            if self.open_export(&v).await? {
                opened += 1;
            }
        }
        Ok(opened)
    }

    async fn open_export(&self, v: &model_version::Model) -> Result<bool> {
        let train = job::Entity::find_by_id(v.train_job_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::internal("a version's training job is gone"))?;
        let spec: JobSpec = serde_json::from_str(&train.spec)?;
        let need = self
            .model_config(&spec.base_model)
            .await
            .ok()
            .map(|c| merge_bytes(&c) as i64);
        let export = ExportSpec {
            version_id: v.id,
            base_model: spec.base_model.clone(),
            method: spec.method,
            train_job: train.id,
        };
        let t = now();
        let txn = self.db.begin().await?;
        let e = job::ActiveModel {
            project_id: Set(v.project_id),
            dataset_version_id: Set(Some(v.dataset_version_id)),
            created_by: Set(train.created_by),
            base_model: Set(train.base_model.clone()),
            method: Set(train.method),
            spec: Set(serde_json::to_string(&export)?),
            state: Set(StoredState::Queued),
            attempts: Set(0),
            max_attempts: Set(MAX_ATTEMPTS),
            created_at: Set(t),
            queued_at: Set(Some(t)),
            updated_at: Set(t),
            priority: Set(train.priority),
            needs_cpu_bytes: Set(need),
            needs_gpu_bytes: Set(need),
            kind: Set(JobKind::Export),
            source_job_id: Set(Some(train.id)),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        let claimed = model_version::Entity::update_many()
            .col_expr(
                model_version::Column::ExportJobId,
                sea_orm::sea_query::Expr::value(e.id),
            )
            .filter(model_version::Column::Id.eq(v.id))
            .filter(model_version::Column::ExportJobId.is_null())
            .exec(&txn)
            .await?
            .rows_affected;
        if claimed == 0 {
            // Another scheduler queued it first.
            txn.rollback().await?;
            return Ok(false);
        }
        txn.commit().await?;
        let what = if spec.method.adapters() {
            "the adapter merged into the base, then GGUF"
        } else {
            "GGUF"
        };
        queue::append(
            &self.db,
            e.id,
            None,
            &state_event(
                JobState::Queued,
                Some(format!(
                    "Exporting version {} (job {}): {what}.",
                    v.number, train.id
                )),
            ),
        )
        .await?;
        tracing::info!(
            version = v.id,
            export = e.id,
            "version approved; export queued"
        );
        Ok(true)
    }

    /// Records the archive of `format` for version `v`: its layout from the
    /// stored blobs, its SHA-256 computed by streaming it once, as a
    /// download would.
    pub async fn package(
        &self,
        v: &model_version::Model,
        format: &str,
        manifest: Manifest,
    ) -> Result<download::Model> {
        let l = layout(&manifest)?;
        let mut hasher = Sha256::new();
        let mut stream = std::pin::pin!(archive_stream(self.blobs.clone(), &l, 0, l.size));
        while let Some(chunk) = stream.next().await {
            hasher.update(&chunk.map_err(|e| Error::internal(format!("archive: {e}")))?);
        }
        let sha = hex::encode(hasher.finalize());
        let file_name = format!("{}.tar", manifest.root);
        download::Entity::delete_many()
            .filter(download::Column::VersionId.eq(v.id))
            .filter(download::Column::Format.eq(format))
            .exec(&self.db)
            .await?;
        Ok(download::ActiveModel {
            version_id: Set(v.id),
            format: Set(format.to_owned()),
            file_name: Set(file_name),
            size: Set(l.size as i64),
            sha256: Set(sha),
            manifest: Set(serde_json::to_string(&manifest)?),
            created_at: Set(now()),
            ..Default::default()
        }
        .insert(&self.db)
        .await?)
    }

    /// The version's downloads, in [`FORMATS`] order.
    pub async fn downloads_of(&self, version: i64) -> Result<Vec<download::Model>> {
        let mut rows = download::Entity::find()
            .filter(download::Column::VersionId.eq(version))
            .all(&self.db)
            .await?;
        rows.sort_by_key(|d| FORMATS.iter().position(|f| *f == d.format));
        Ok(rows)
    }

    /// What the version page shows of publishing: the card and downloads
    /// (only while the version is approved), the export job's state.
    pub(crate) async fn publishing_of(
        &self,
        v: &model_version::Model,
    ) -> Result<hone_app::api::Publishing> {
        let mut out = hone_app::api::Publishing::default();
        let Some(export) = v.export_job_id else {
            return Ok(out);
        };
        let Some(j) = job::Entity::find_by_id(export).one(&self.db).await? else {
            return Ok(out);
        };
        out.export_job = Some((j.id, j.state.into()));
        if !self.approved(v).await? {
            return Ok(out);
        }
        let artifacts = job_artifact::Entity::find()
            .filter(job_artifact::Column::JobId.eq(j.id))
            .all(&self.db)
            .await?;
        for a in &artifacts {
            if a.path == "card/README.md" {
                out.card = Some(
                    String::from_utf8_lossy(&self.blobs.read(&a.storage_key).await?).into_owned(),
                );
            } else if a.path == crate::jobs::worker::GGUF_REFUSED_PATH {
                out.gguf_refused = Some(
                    String::from_utf8_lossy(&self.blobs.read(&a.storage_key).await?).into_owned(),
                );
            }
        }
        out.downloads = self
            .downloads_of(v.id)
            .await?
            .into_iter()
            .map(|d| hone_app::api::DownloadRow {
                href: format!("/api/versions/{}/downloads/{}", v.id, d.format),
                format: d.format,
                file_name: d.file_name,
                size: d.size as u64,
                sha256: d.sha256,
            })
            .collect();
        Ok(out)
    }

    /// The model card: a Hugging Face `README.md` (YAML metadata, then
    /// the facts) of version `v`, written from what Hone recorded.
    pub async fn model_card(&self, v: &model_version::Model) -> Result<String> {
        let p = project::Entity::find_by_id(v.project_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::internal("a version's project is gone"))?;
        let train = job::Entity::find_by_id(v.train_job_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::internal("a version's training job is gone"))?;
        let spec: JobSpec = serde_json::from_str(&train.spec)?;
        let d = dataset_version::Entity::find_by_id(v.dataset_version_id)
            .one(&self.db)
            .await?;
        let report = match self.report_of(v).await? {
            Some((bytes, sha)) => Some((
                serde_json::from_slice::<hone_protocol::evaluation::Report>(&bytes)?,
                sha,
            )),
            None => None,
        };
        let reviews = review::Entity::find()
            .filter(review::Column::VersionId.eq(v.id))
            .order_by_asc(review::Column::Id)
            .all(&self.db)
            .await?;
        let names = self
            .usernames(reviews.iter().map(|r| r.reviewer_id))
            .await?;
        let ratings = self.ratings_of(v, 0).await?;
        let license = self.base_license(&spec.base_model).await;
        let adapters = spec.method.adapters();

        let mut s = String::from("---\n");
        let _ = writeln!(s, "base_model: {}", yaml_str(&spec.base_model));
        if adapters {
            s.push_str("library_name: peft\n");
        } else {
            s.push_str("library_name: transformers\n");
        }
        if let Some(l) = &license {
            let _ = writeln!(s, "license: {}", yaml_str(l));
        }
        s.push_str("pipeline_tag: text-generation\ntags:\n- hone\n");
        let _ = writeln!(s, "- {}", method_tag(spec.method));
        if spec.method == Method::Qlora {
            s.push_str("- lora\n");
        }
        let _ = writeln!(s, "datasets:\n- sha256:{}", v.dataset_sha256);
        s.push_str("---\n\n");
        let _ = writeln!(s, "# {} — version {}\n", p.name, v.number);
        let _ = writeln!(
            s,
            "A {} fine-tune of `{}`, trained and evaluated by Hone. Everything below is what Hone recorded; nothing is written by hand.\n",
            method_label(spec.method),
            spec.base_model
        );

        s.push_str("## Data\n\n");
        match &d {
            Some(d) => {
                let _ = writeln!(s, "- Dataset version: {} (`{}`)", d.name, d.format);
                let _ = writeln!(
                    s,
                    "- Examples: {} usable; {} refused by the checks{}",
                    d.examples,
                    d.rejected,
                    if d.dropped_rejected {
                        " and left out by the person who saved it"
                    } else {
                        ""
                    }
                );
                let _ = writeln!(
                    s,
                    "- Findings: {}, {}",
                    plural(d.errors, "error"),
                    plural(d.warnings, "warning")
                );
                let findings: serde_json::Value =
                    serde_json::from_str(&d.finding_counts).unwrap_or_default();
                if let Some(map) = findings.as_object() {
                    for (k, n) in map {
                        let _ = writeln!(s, "  - {k}: {n}");
                    }
                }
                let _ = writeln!(
                    s,
                    "- Split: seed {}, ratios {}: {} train, {} validation, {} test",
                    d.seed, d.ratios, d.train_count, d.validation_count, d.test_count
                );
                let _ = writeln!(
                    s,
                    "- SHA-256: train `{}`, validation `{}`, test `{}`; the version `{}`\n",
                    d.train_sha256, d.validation_sha256, d.test_sha256, v.dataset_sha256
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "- The dataset version was archived; its SHA-256 was `{}`\n",
                    v.dataset_sha256
                );
            }
        }

        s.push_str("## Training\n\n");
        let _ = writeln!(s, "- Method: {}", method_label(spec.method));
        let device: Option<hone_protocol::Device> = train
            .device
            .as_deref()
            .and_then(|d| serde_json::from_str(d).ok());
        if let Some(dev) = &device {
            let _ = writeln!(s, "- Hardware: {}", dev.name);
        }
        if let (Some(a), Some(b)) = (train.started_at, train.finished_at) {
            let secs = (b - a).max(0);
            let _ = writeln!(
                s,
                "- Duration: {} (GPU-hours: {:.3})",
                duration(secs),
                if device
                    .as_ref()
                    .is_some_and(|d| d.kind == hone_protocol::DeviceKind::Cuda)
                {
                    secs as f64 / 3600.0
                } else {
                    0.0
                }
            );
        }
        let outcome: serde_json::Value = train
            .outcome
            .as_deref()
            .and_then(|o| serde_json::from_str(o).ok())
            .unwrap_or_default();
        if let Some(l) = outcome["final_train_loss"].as_f64() {
            let _ = writeln!(s, "- Final training loss: {l:.4}");
        }
        if let Some(l) = outcome["best_eval_loss"].as_f64() {
            let _ = writeln!(s, "- Best validation loss: {l:.4}");
        }
        let _ = writeln!(s, "- Settings SHA-256: `{}`", v.settings_sha256);
        s.push_str("\n| Setting | Value |\n|---|---|\n");
        if let serde_json::Value::Object(map) = serde_json::to_value(&spec.config)? {
            for (k, val) in map {
                let shown = match &val {
                    serde_json::Value::String(t) => t.clone(),
                    other => other.to_string(),
                };
                let _ = writeln!(s, "| `{k}` | {} |", shown.replace('|', "\\|"));
            }
        }
        s.push('\n');

        s.push_str("## Evaluation\n\n");
        match &report {
            Some((r, sha)) => {
                let _ = writeln!(
                    s,
                    "On the test split: {} examples, {} with an answer to score; greedy decoding; 95 % intervals from {} bootstrap resamples (seed {}). Report SHA-256 `{sha}`.\n",
                    r.examples, r.answered, r.resamples, r.seed
                );
                s.push_str("| Metric | Tuned | Base | Tuned − base |\n|---|---|---|---|\n");
                let iv = |i: &hone_protocol::evaluation::Interval| {
                    format!("{:.4} [{:.4}, {:.4}]", i.value, i.low, i.high)
                };
                for m in &r.metrics {
                    let _ = writeln!(
                        s,
                        "| {} | {} | {} | {} |",
                        m.metric.label(),
                        iv(&m.tuned),
                        m.base.as_ref().map_or("—".into(), iv),
                        m.difference.as_ref().map_or("—".into(), iv)
                    );
                }
                for n in &r.notes {
                    let _ = writeln!(s, "\n{n}");
                }
            }
            None => s.push_str("Not evaluated.\n"),
        }
        let o = &ratings.overall;
        let _ = writeln!(
            s,
            "\nBlind ratings: {} examples rated; tuned better {}, base better {}, ties {}, both bad {}{}.\n",
            o.rated,
            o.wins,
            o.losses,
            o.ties,
            o.both_bad,
            o.rate.as_ref().map_or(String::new(), |r| format!(
                "; win rate {:.0} % [{:.0} %, {:.0} %]",
                r.value * 100.0,
                r.low * 100.0,
                r.high * 100.0
            ))
        );

        s.push_str("## Review\n\n");
        if reviews.is_empty() {
            s.push_str("Not reviewed.\n");
        }
        for r in &reviews {
            let who = names.get(&r.reviewer_id).cloned().unwrap_or_default();
            let word = match r.decision {
                StoredDecision::Approved => "approved",
                StoredDecision::Rejected => "rejected",
            };
            let _ = write!(s, "- {} {word} on {}", who, date(r.created_at));
            if r.comment.is_empty() {
                s.push('\n');
            } else {
                let _ = writeln!(s, ": “{}”", r.comment.replace('\n', " "));
            }
        }
        s.push_str("\n## Files\n\n");
        if adapters {
            s.push_str("- The PEFT adapter: `PeftModel.from_pretrained(base, folder)`.\n");
        }
        s.push_str("- The merged Hugging Face folder (safetensors in the base's dtype, config, tokenizer, chat template).\n- GGUF for llama.cpp and Ollama (f16, q8_0), with the tokenizer and chat template inside.\n");
        let _ = writeln!(s, "\nTrained files SHA-256: `{}`", v.artifact_sha256);
        Ok(s)
    }

    /// The licence the base model's folder states (`license:` in its
    /// README's metadata), if it states one.
    async fn base_license(&self, base: &str) -> Option<String> {
        let path = self.config.models_dir.join(base).join("README.md");
        let text = tokio::fs::read_to_string(path).await.ok()?;
        let meta = text.strip_prefix("---")?.split("\n---").next()?.to_owned();
        meta.lines()
            .find_map(|l| l.trim().strip_prefix("license:"))
            .map(|l| l.trim().trim_matches('"').to_owned())
            .filter(|l| !l.is_empty())
    }
}

fn plural(n: i64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn method_tag(m: Method) -> &'static str {
    match m {
        Method::Full => "full",
        Method::Lora => "lora",
        Method::Qlora => "qlora",
    }
}

fn method_label(m: Method) -> &'static str {
    match m {
        Method::Full => "full",
        Method::Lora => "LoRA",
        Method::Qlora => "QLoRA (LoRA over a 4-bit NF4 base)",
    }
}

fn yaml_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn duration(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min {} s", s / 60, s % 60),
        s => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

fn date(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        })
        .unwrap_or_default()
}

/// A parsed `Range: bytes=…` header against an archive of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Range {
    /// No (usable) range: the whole archive.
    Whole,
    /// `start..end` (end exclusive).
    Part(u64, u64),
    /// Past the end: 416.
    Unsatisfiable,
}

/// One range (`a-b`, `a-`, `-n`); several ranges are answered whole, as
/// the RFC allows.
pub fn parse_range(header: Option<&str>, size: u64) -> Range {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Range::Whole;
    };
    if spec.contains(',') {
        return Range::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Range::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // The last n bytes.
        return match b.parse::<u64>() {
            Ok(0) => Range::Unsatisfiable,
            Ok(n) => Range::Part(size.saturating_sub(n), size),
            Err(_) => Range::Whole,
        };
    }
    let Ok(start) = a.parse::<u64>() else {
        return Range::Whole;
    };
    if start >= size {
        return Range::Unsatisfiable;
    }
    let end = if b.is_empty() {
        size
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => (e + 1).min(size),
            _ => return Range::Whole,
        }
    };
    Range::Part(start, end)
}

/// The manifest of a format, from the version's files: `files` are
/// `(path in the archive, size, blob key)`.
pub fn manifest(
    project: &str,
    number: i32,
    format: &str,
    mtime: i64,
    card_key: &str,
    card_size: u64,
    files: Vec<(String, u64, String)>,
) -> Manifest {
    let mut entries = vec![Entry {
        path: "README.md".into(),
        size: card_size,
        key: card_key.to_owned(),
    }];
    entries.extend(
        files
            .into_iter()
            .map(|(path, size, key)| Entry { path, size, key }),
    );
    Manifest {
        root: format!("{}-v{number}-{format}", safe_name(project)),
        mtime,
        entries,
    }
}

/// The files of the version's artifacts under `prefix/`, as archive
/// entries without the prefix.
pub fn files_under(artifacts: &[job_artifact::Model], prefix: &str) -> Vec<(String, u64, String)> {
    let mut out: Vec<_> = artifacts
        .iter()
        .filter_map(|a| {
            let rest = a.path.strip_prefix(prefix)?.strip_prefix('/')?;
            Some((rest.to_owned(), a.size as u64, a.storage_key.clone()))
        })
        .collect();
    out.sort();
    out
}

/// `GET /api/versions/{id}/downloads/{format}`: an approved version's
/// archive, streamed, in ranges when asked (`Range`, `If-Range`), for
/// anyone who may read its project; 404 for others (as if it did not
/// exist), 403 while the version is not approved, 416 past the end. Each
/// download that starts at byte 0 is in the audit log.
pub async fn download_route(
    axum::extract::State(s): axum::extract::State<std::sync::Arc<Services>>,
    crate::accounts::SignedIn(u): crate::accounts::SignedIn,
    axum::extract::Path((id, format)): axum::extract::Path<(i64, String)>,
    headers: axum::http::HeaderMap,
) -> Result<axum::response::Response> {
    use axum::body::Body;
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let (v, p) = s.version_with(&u, id, crate::policy::Action::Read).await?;
    if !FORMATS.contains(&format.as_str()) {
        return Err(hone_app::api::AppError::NotFound(format!(
            "a download format {format:?} (adapter, merged, gguf-f16 or gguf-q8_0)"
        ))
        .into());
    }
    if !s.approved(&v).await? {
        return Ok((
            StatusCode::FORBIDDEN,
            "This version is not approved: its downloads open once a reviewer approves it.",
        )
            .into_response());
    }
    let row = download::Entity::find()
        .filter(download::Column::VersionId.eq(v.id))
        .filter(download::Column::Format.eq(format.as_str()))
        .one(&s.db)
        .await?
        .ok_or_else(|| {
            hone_app::api::AppError::NotFound(format!(
                "the {format} download of version {} (it is being exported, or this format is not offered for it)",
                v.number
            ))
        })?;
    let manifest: Manifest = serde_json::from_str(&row.manifest)?;
    let l = layout(&manifest)?;
    let etag = format!("\"{}\"", row.sha256);
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .and_then(|h| h.to_str().ok())
        .is_none_or(|h| h == etag);
    let range = if if_range_ok {
        parse_range(
            headers.get(header::RANGE).and_then(|h| h.to_str().ok()),
            l.size,
        )
    } else {
        Range::Whole
    };
    let (start, end) = match range {
        Range::Whole => (0, l.size),
        Range::Part(a, b) => (a, b),
        Range::Unsatisfiable => {
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{}", l.size))],
                format!("The archive has {} bytes.", l.size),
            )
                .into_response());
        }
    };
    if start == 0 {
        let label = format!("{} version {} ({format})", p.name, v.number);
        crate::audit::record(
            &s.db,
            Some(&u),
            crate::entity::audit::AuditAction::ModelDownloaded,
            crate::audit::Target {
                kind: "model_version",
                id: Some(v.id),
                label: &label,
            },
            serde_json::json!({
                "format": format,
                "sha256": row.sha256,
                "bytes": end - start,
            }),
        )
        .await?;
    }
    let body = Body::from_stream(archive_stream(s.blobs.clone(), &l, start, end));
    let status = if matches!(range, Range::Part(..)) {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let mut response = (
        status,
        [
            (header::CONTENT_TYPE, "application/x-tar".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", row.file_name),
            ),
            (header::ETAG, etag),
            (header::ACCEPT_RANGES, "bytes".to_owned()),
            (header::CONTENT_LENGTH, (end - start).to_string()),
            (
                header::HeaderName::from_static("x-checksum-sha256"),
                row.sha256.clone(),
            ),
        ],
        body,
    )
        .into_response();
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = format!("bytes {start}-{}/{}", end - 1, l.size).parse() {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_the_rfc_says() {
        assert_eq!(parse_range(None, 100), Range::Whole);
        assert_eq!(parse_range(Some("bytes=0-9"), 100), Range::Part(0, 10));
        assert_eq!(parse_range(Some("bytes=90-"), 100), Range::Part(90, 100));
        assert_eq!(parse_range(Some("bytes=-10"), 100), Range::Part(90, 100));
        assert_eq!(parse_range(Some("bytes=50-500"), 100), Range::Part(50, 100));
        assert_eq!(parse_range(Some("bytes=100-"), 100), Range::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Range::Whole);
        assert_eq!(parse_range(Some("items=0-1"), 100), Range::Whole);
    }

    #[test]
    fn tar_headers_are_ustar_with_a_valid_checksum() {
        let h = tar_header("model-v1-adapter/README.md", 1234, 1_700_000_000).unwrap();
        assert_eq!(&h[257..263], b"ustar\0");
        assert_eq!(&h[124..136], b"00000002322\0");
        let stored = std::str::from_utf8(&h[148..154]).unwrap();
        let mut copy = h;
        copy[148..156].copy_from_slice(b"        ");
        let sum: u32 = copy.iter().map(|b| u32::from(*b)).sum();
        assert_eq!(u32::from_str_radix(stored, 8).unwrap(), sum);
        let long = format!("{}/{}", "a".repeat(90), "b".repeat(60));
        let h = tar_header(&long, 1, 0).unwrap();
        assert_eq!(&h[..60], "b".repeat(60).as_bytes());
        assert_eq!(&h[345..435], "a".repeat(90).as_bytes());
        let big = tar_header("x", 9 << 30, 0).unwrap();
        assert_eq!(big[124], 0x80);
    }
}
