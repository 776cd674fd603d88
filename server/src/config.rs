//! Configuration: defaults, then an optional `hone.toml`, then `HONE_*`
//! environment variables (and `DATABASE_URL`), each overriding the last.

use anyhow::{bail, Context};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Everything the server needs to start. See the README for each setting.
#[derive(Clone, Debug)]
pub struct Config {
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    /// `None`: SQLite file `hone.db` in the data directory.
    pub database_url: Option<String>,
    pub max_upload_bytes: u64,
    pub session_hours: i64,
    /// The address people use; `https://…` makes session cookies `Secure`.
    pub public_url: String,
    /// Where the compiled WASM bundle and CSS are (`pkg/` inside).
    pub site_root: PathBuf,
    /// Base models: one Hugging Face folder each (`config.json`,
    /// `tokenizer.json`, …). The built-in demo model needs none.
    pub models_dir: PathBuf,
    /// Local worker slots `hone serve` starts: `None` one per GPU (else one
    /// CPU slot); `Some(0)` none (jobs then need `hone worker`).
    pub workers: Option<usize>,
    /// The training engine's binary.
    pub train_bin: PathBuf,
    /// How long a job stays a worker's after its last heartbeat.
    pub job_lease_ms: u64,
    /// A session ends after this long unused (hours)…
    pub session_idle_hours: i64,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<crate::http::client::Net>,
    /// A client has this long to send a request's headers (and an idle
    /// keep-alive connection is closed after it).
    pub header_timeout_ms: u64,
    /// Ordinary requests (pages, server functions, API calls) end with 408
    /// after this long; uploads, downloads and event streams are exempt.
    pub request_timeout_secs: u64,
    /// An upload that sends nothing for this long is dropped.
    pub upload_idle_secs: u64,
    /// Open connections at most (more wait in the backlog).
    pub max_connections: usize,
    /// Uploads in progress at most (more get 503).
    pub max_uploads: usize,
    /// Saved dataset versions checked at once (the rest wait their turn).
    pub dataset_checks: usize,
    /// A declared inventory (`HONE_DEVICES`, JSON as `hone-train devices`
    /// prints it): the worker slots report these devices as theirs and run
    /// jobs on the CPU. For tests and demonstrations of scheduling without
    /// GPUs; `None`: the devices `hone-train devices` finds.
    pub devices: Option<Vec<hone_protocol::Device>>,
    /// Which checkpoints a training job keeps once it has succeeded
    /// (`HONE_KEEP_CHECKPOINTS`): `best-last` (default: the lowest
    /// validation loss and the last), `last`, or `all`.
    pub keep_checkpoints: KeepCheckpoints,
    /// The most memory (resident bytes) an export's engine may use on this
    /// machine's workers (`HONE_EXPORT_MEMORY_LIMIT`: bytes, or with `MiB`
    /// / `GiB`); over it, the merge is stopped and the export fails with
    /// what it needs. `None` (default): no limit but the machine's.
    pub export_memory_limit: Option<u64>,
    /// Chat requests one inference service takes at once, answered or
    /// waiting (`HONE_SERVE_QUEUE`, default 64); more get 429.
    pub serve_queue: usize,
    /// Chat requests one API key may make a minute
    /// (`HONE_CHAT_REQUESTS_PER_MINUTE`, default 600).
    pub chat_requests_per_minute: u64,
    /// Prompt and answer tokens one API key may use a minute
    /// (`HONE_CHAT_TOKENS_PER_MINUTE`, default 200 000).
    pub chat_tokens_per_minute: u64,
    /// The most new tokens one answer may ask for
    /// (`HONE_CHAT_MAX_TOKENS`, default 4096).
    pub chat_max_tokens: u64,
}

/// `4096`, `512MiB`, `8GiB`: bytes.
pub fn parse_bytes(v: &str) -> Option<u64> {
    let v = v.trim();
    let (digits, unit) = match v.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => v.split_at(i),
        None => (v, ""),
    };
    let n: u64 = digits.parse().ok()?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(scale).filter(|b| *b > 0)
}

/// Checkpoints kept after a training job succeeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeepCheckpoints {
    BestLast,
    Last,
    All,
}

impl std::str::FromStr for KeepCheckpoints {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<KeepCheckpoints> {
        match s {
            "best-last" => Ok(KeepCheckpoints::BestLast),
            "last" => Ok(KeepCheckpoints::Last),
            "all" => Ok(KeepCheckpoints::All),
            other => {
                anyhow::bail!("HONE_KEEP_CHECKPOINTS: {other:?} is not best-last, last or all")
            }
        }
    }
}

/// The engine: `hone-train` beside the running `hone` (as `scripts/run`
/// builds them), else on `PATH`.
fn default_train_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("hone-train")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("hone-train"))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    bind: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    max_upload_bytes: Option<u64>,
    session_hours: Option<i64>,
    public_url: Option<String>,
    site_root: Option<PathBuf>,
    models_dir: Option<PathBuf>,
    workers: Option<usize>,
    train_bin: Option<PathBuf>,
    job_lease_ms: Option<u64>,
    session_idle_hours: Option<i64>,
    trusted_proxies: Option<Vec<String>>,
    header_timeout_ms: Option<u64>,
    request_timeout_secs: Option<u64>,
    upload_idle_secs: Option<u64>,
    max_connections: Option<usize>,
    max_uploads: Option<usize>,
    dataset_checks: Option<usize>,
    keep_checkpoints: Option<KeepCheckpoints>,
    export_memory_limit: Option<String>,
    serve_queue: Option<usize>,
    chat_requests_per_minute: Option<u64>,
    chat_tokens_per_minute: Option<u64>,
    chat_max_tokens: Option<u64>,
    devices: Option<Vec<hone_protocol::Device>>,
}

pub const DEFAULT_MAX_UPLOAD: u64 = 2 * 1024 * 1024 * 1024;

impl Config {
    /// Reads `hone.toml` (or the file `HONE_CONFIG` names) and the environment.
    pub fn load() -> anyhow::Result<Config> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let path = env("HONE_CONFIG").map(PathBuf::from);
        let file = match &path {
            Some(p) => read_file(p)?,
            None if Path::new("hone.toml").exists() => read_file(Path::new("hone.toml"))?,
            None => FileConfig::default(),
        };
        Config::build(file, env)
    }

    fn build(file: FileConfig, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Config> {
        let bind = env("HONE_BIND")
            .or(file.bind)
            .unwrap_or_else(|| "127.0.0.1:3000".into());
        let bind: SocketAddr = bind.parse().with_context(|| {
            format!("HONE_BIND / bind: {bind:?} is not an address like 127.0.0.1:3000")
        })?;
        let max_upload_bytes = match env("HONE_MAX_UPLOAD_BYTES") {
            Some(v) => v.parse().with_context(|| {
                format!("HONE_MAX_UPLOAD_BYTES: {v:?} is not a number of bytes")
            })?,
            None => file.max_upload_bytes.unwrap_or(DEFAULT_MAX_UPLOAD),
        };
        let session_hours = match env("HONE_SESSION_HOURS") {
            Some(v) => v.parse().with_context(|| {
                format!("HONE_SESSION_HOURS: {v:?} is not a whole number of hours")
            })?,
            None => file.session_hours.unwrap_or(24 * 7),
        };
        if session_hours < 1 {
            bail!("HONE_SESSION_HOURS / session_hours must be at least 1");
        }
        let session_idle_hours = match env("HONE_SESSION_IDLE_HOURS") {
            Some(v) => v.parse().with_context(|| {
                format!("HONE_SESSION_IDLE_HOURS: {v:?} is not a whole number of hours")
            })?,
            None => file.session_idle_hours.unwrap_or(12),
        };
        if !(1..=session_hours).contains(&session_idle_hours) {
            bail!("HONE_SESSION_IDLE_HOURS / session_idle_hours must be from 1 to HONE_SESSION_HOURS ({session_hours})");
        }
        let proxies: Vec<String> = match env("HONE_TRUSTED_PROXIES") {
            Some(v) => v
                .split(',')
                .map(str::to_owned)
                .filter(|s| !s.trim().is_empty())
                .collect(),
            None => file.trusted_proxies.unwrap_or_default(),
        };
        let trusted_proxies = proxies
            .iter()
            .map(|p| p.parse())
            .collect::<Result<Vec<crate::http::client::Net>, String>>()
            .map_err(|e| anyhow::anyhow!("HONE_TRUSTED_PROXIES / trusted_proxies: {e}"))?;
        let workers = match env("HONE_WORKERS") {
            Some(v) => Some(v.parse().with_context(|| {
                format!("HONE_WORKERS: {v:?} is not a whole number of worker slots")
            })?),
            None => file.workers,
        };
        let job_lease_ms = match env("HONE_JOB_LEASE_MS") {
            Some(v) => v.parse().with_context(|| {
                format!("HONE_JOB_LEASE_MS: {v:?} is not a whole number of milliseconds")
            })?,
            None => file.job_lease_ms.unwrap_or(30_000),
        };
        if job_lease_ms < 300 {
            bail!("HONE_JOB_LEASE_MS / job_lease_ms must be at least 300");
        }
        let number = |var: &str, file: Option<u64>, default: u64| -> anyhow::Result<u64> {
            let n = match env(var) {
                Some(v) => v
                    .parse()
                    .with_context(|| format!("{var}: {v:?} is not a whole number"))?,
                None => file.unwrap_or(default),
            };
            if n == 0 {
                bail!("{var} must be at least 1");
            }
            Ok(n)
        };
        let header_timeout_ms = number("HONE_HEADER_TIMEOUT_MS", file.header_timeout_ms, 30_000)?;
        let request_timeout_secs =
            number("HONE_REQUEST_TIMEOUT_SECS", file.request_timeout_secs, 60)?;
        let upload_idle_secs = number("HONE_UPLOAD_IDLE_SECS", file.upload_idle_secs, 30)?;
        let max_connections = number(
            "HONE_MAX_CONNECTIONS",
            file.max_connections.map(|n| n as u64),
            4096,
        )? as usize;
        let max_uploads =
            number("HONE_MAX_UPLOADS", file.max_uploads.map(|n| n as u64), 32)? as usize;
        // Checks are CPU work: half the cores, leaving the rest to requests
        // and local training.
        let dataset_checks = number(
            "HONE_DATASET_CHECKS",
            file.dataset_checks.map(|n| n as u64),
            std::thread::available_parallelism().map_or(1, |n| n.get().div_ceil(2)) as u64,
        )? as usize;
        let devices = match env("HONE_DEVICES") {
            Some(v) => Some(serde_json::from_str(&v).with_context(|| {
                format!("HONE_DEVICES: {v:?} is not a JSON list of devices like [{{\"kind\":\"cuda\",\"index\":0,\"name\":\"NVIDIA H200\",\"memory_bytes\":150000000000}}]")
            })?),
            None => file.devices,
        };
        let data_dir = env("HONE_DATA_DIR")
            .map(PathBuf::from)
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("data"));
        Ok(Config {
            bind,
            models_dir: env("HONE_MODELS_DIR")
                .map(PathBuf::from)
                .or(file.models_dir)
                .unwrap_or_else(|| data_dir.join("models")),
            data_dir,
            database_url: env("DATABASE_URL").or(file.database_url),
            max_upload_bytes,
            session_hours,
            public_url: env("HONE_PUBLIC_URL")
                .or(file.public_url)
                .unwrap_or_else(|| format!("http://{bind}")),
            site_root: env("HONE_SITE_ROOT")
                .map(PathBuf::from)
                .or(file.site_root)
                .unwrap_or_else(|| PathBuf::from("target/site")),
            workers,
            train_bin: env("HONE_TRAIN_BIN")
                .map(PathBuf::from)
                .or(file.train_bin)
                .unwrap_or_else(default_train_bin),
            job_lease_ms,
            session_idle_hours,
            trusted_proxies,
            header_timeout_ms,
            request_timeout_secs,
            upload_idle_secs,
            max_connections,
            max_uploads,
            dataset_checks,
            devices,
            keep_checkpoints: match env("HONE_KEEP_CHECKPOINTS") {
                Some(v) => v.parse()?,
                None => file.keep_checkpoints.unwrap_or(KeepCheckpoints::BestLast),
            },
            chat_requests_per_minute: number(
                "HONE_CHAT_REQUESTS_PER_MINUTE",
                file.chat_requests_per_minute,
                600,
            )?,
            chat_tokens_per_minute: number(
                "HONE_CHAT_TOKENS_PER_MINUTE",
                file.chat_tokens_per_minute,
                200_000,
            )?,
            chat_max_tokens: number("HONE_CHAT_MAX_TOKENS", file.chat_max_tokens, 4096)?,
            serve_queue: number("HONE_SERVE_QUEUE", file.serve_queue.map(|n| n as u64), 64)?
                as usize,
            export_memory_limit: match env("HONE_EXPORT_MEMORY_LIMIT").or(file.export_memory_limit) {
                Some(v) => Some(parse_bytes(&v).with_context(|| {
                    format!("HONE_EXPORT_MEMORY_LIMIT: {v:?} is not a size (bytes, or e.g. 512MiB, 8GiB)")
                })?),
                None => None,
            },
        })
    }

    /// Cookies get `Secure` when people reach Hone over HTTPS.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading configuration file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing configuration file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn export_memory_limits_are_sizes() {
        assert_eq!(parse_bytes("4096"), Some(4096));
        assert_eq!(parse_bytes("512MiB"), Some(512 << 20));
        assert_eq!(parse_bytes("8 GiB"), Some(8 << 30));
        for bad in ["", "0", "8GB", "-1", "lots", "99999999999999GiB"] {
            assert_eq!(parse_bytes(bad), None, "{bad:?}");
        }
        let c = Config::build(FileConfig::default(), env_of(&[])).unwrap();
        assert_eq!(c.export_memory_limit, None);
        let c = Config::build(
            FileConfig::default(),
            env_of(&[("HONE_EXPORT_MEMORY_LIMIT", "2GiB")]),
        )
        .unwrap();
        assert_eq!(c.export_memory_limit, Some(2 << 30));
        let err = Config::build(
            FileConfig::default(),
            env_of(&[("HONE_EXPORT_MEMORY_LIMIT", "2GB")]),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("HONE_EXPORT_MEMORY_LIMIT"),
            "{err}"
        );
    }

    #[test]
    fn defaults_are_local_and_safe() {
        let c = Config::build(FileConfig::default(), env_of(&[])).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:3000");
        assert_eq!(c.max_upload_bytes, 2 * 1024 * 1024 * 1024);
        assert_eq!(c.session_hours, 168);
        assert_eq!(c.session_idle_hours, 12);
        assert!(c.trusted_proxies.is_empty());
        assert!(c.database_url.is_none());
        assert!(!c.secure_cookies());
    }

    #[test]
    fn environment_overrides_file() {
        let file: FileConfig =
            toml::from_str("bind = \"0.0.0.0:80\"\nmax_upload_bytes = 10\n").unwrap();
        let c = Config::build(
            file,
            env_of(&[
                ("HONE_BIND", "127.0.0.1:9"),
                ("HONE_PUBLIC_URL", "https://hone.example"),
            ]),
        )
        .unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:9");
        assert_eq!(c.max_upload_bytes, 10);
        assert!(c.secure_cookies());
    }

    #[test]
    fn bad_values_name_the_setting() {
        let err = Config::build(
            FileConfig::default(),
            env_of(&[("HONE_MAX_UPLOAD_BYTES", "lots")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("HONE_MAX_UPLOAD_BYTES"), "{err}");
        assert!(toml::from_str::<FileConfig>("colour = 1").is_err());
    }
}
