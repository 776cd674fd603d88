//! The `hone` binary: `hone serve` (the default) runs the web server;
//! `hone user create` adds an account and `hone api-key create` makes an
//! API key without the browser.

use anyhow::Context;
use clap::{Parser, Subcommand};
use hone_app::api::Role;
use hone_server::cli::dataset as dataset_cli;
use hone_server::config::Config;
use hone_server::state::Services;
use hone_server::supervisor::Supervisor;
use hone_server::{db, router, sessions, storage::BlobStore};
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "hone",
    version,
    about = "Fine-tune open LLMs on your own data, from a browser."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the web server (the default), with this machine's workers
    /// (HONE_WORKERS: how many; 0 for none).
    Serve,
    /// Run training workers only, against the same database and storage
    /// as the web server (for more machines or GPUs).
    Worker {
        /// Worker slots (default: one per GPU, else one CPU slot).
        #[arg(long)]
        slots: Option<usize>,
    },
    /// Manage accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage API keys (for OpenAI's client and other scripts).
    ApiKey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// Check and split training data files (no server or database needed).
    Dataset {
        #[command(subcommand)]
        command: DatasetCommand,
    },
    /// Print, as JSON, the devices this machine's workers would report:
    /// what `hone-train devices` finds (or HONE_DEVICES declares), checked,
    /// with NVIDIA GPUs' live figures through NVML. Exits 1 when the
    /// inventory is refused or the engine cannot run.
    Devices,
}

#[derive(Subcommand)]
enum DatasetCommand {
    /// Print every problem, with line numbers and fixes, and statistics.
    /// Exits with status 1 when there are errors.
    Check {
        file: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        columns: ColumnArgs,
        #[command(flatten)]
        tokens: TokenArgs,
    },
    /// Write train.jsonl, validation.jsonl and test.jsonl (normalised chat
    /// format); examples with errors are left out.
    Split {
        file: PathBuf,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Train, validation and test percentages.
        #[arg(long, default_value = "80,10,10")]
        ratios: hone_dataset::Ratios,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        columns: ColumnArgs,
        #[command(flatten)]
        tokens: TokenArgs,
    },
}

/// How lengths are counted. By default with the built-in demo model's
/// tokenizer and context length, as the browser does.
#[derive(clap::Args)]
struct TokenArgs {
    /// A model's tokenizer.json, or its Hugging Face folder; its
    /// tokenizer_config.json, chat_template.jinja and config.json are read
    /// from the same folder.
    #[arg(long, conflicts_with = "characters")]
    tokenizer: Option<PathBuf>,
    /// The longest example allowed, in tokens (default: the model's context
    /// length).
    #[arg(long, conflicts_with = "characters")]
    max_tokens: Option<u32>,
    /// Count characters instead of tokens (no tokenizer, no length limit).
    #[arg(long)]
    characters: bool,
}

impl TokenArgs {
    fn load(self) -> anyhow::Result<Option<(hone_dataset::tokens::ChatTokenizer, Option<u32>)>> {
        if self.characters {
            return Ok(None);
        }
        let (tokenizer, context) = dataset_cli::load_tokenizer(self.tokenizer.as_deref())?;
        Ok(Some((tokenizer, self.max_tokens.or(context))))
    }
}

/// CSV/TSV columns, when their names do not say which is which.
#[derive(clap::Args)]
struct ColumnArgs {
    #[arg(long, requires = "response_column")]
    prompt_column: Option<String>,
    #[arg(long, requires = "prompt_column")]
    response_column: Option<String>,
    #[arg(long, requires = "prompt_column")]
    category_column: Option<String>,
}

impl ColumnArgs {
    fn options(self) -> hone_dataset::Options {
        let opts = hone_dataset::Options::default();
        match (self.prompt_column, self.response_column) {
            (Some(prompt), Some(response)) => opts.with_columns(hone_dataset::Columns {
                prompt,
                response,
                category: self.category_column,
            }),
            _ => opts,
        }
    }
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account. The password is read from standard input (one line).
    Create {
        #[arg(long)]
        username: String,
        #[arg(long, value_parser = ["expert", "reviewer", "admin"], default_value = "expert")]
        role: String,
        /// The team to put the user in (created if it does not exist).
        #[arg(long, default_value = "Default")]
        team: String,
    },
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Make a key that acts as USER in one project, and print it once on
    /// standard output (Hone stores only its hash).
    Create {
        /// The key's owner: it acts with their role and teams.
        #[arg(long)]
        user: String,
        /// The project's id (in the address of its page: /projects/ID).
        #[arg(long)]
        project: i64,
        /// A label to recognise the key by on the settings page.
        #[arg(long, default_value = "cli")]
        name: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("HONE_LOG")
                .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // Dataset commands work on files alone: no configuration or database.
    let command = match cli.command.unwrap_or(Command::Serve) {
        Command::Dataset { command } => return dataset(command),
        Command::Devices => return devices().await,
        other => other,
    };
    let config = Config::load()?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let db = db::connect(config.database_url.as_deref(), &config.data_dir).await?;
    let blobs = BlobStore::local(&config.data_dir.join("files")).context("opening file storage")?;
    let mut services = Services::new(db, blobs, config);
    if matches!(command, Command::Serve) {
        services.setup_token = setup_token(&services).await?;
    }
    let services = Arc::new(services);
    match command {
        Command::Serve => serve(services).await,
        Command::Worker { slots } => workers_only(services, slots).await,
        Command::Devices => devices().await,
        Command::Dataset { command } => dataset(command),
        Command::User {
            command:
                UserCommand::Create {
                    username,
                    role,
                    team,
                },
        } => {
            let role = Role::parse(&role).context("unknown role")?;
            let mut password = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut password)
                .context("reading the password from standard input")?;
            let password = password.trim_end_matches(['\r', '\n']);
            let team = services
                .ensure_team(&team)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let user = services
                .insert_user(&username, password, role, team.id)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            tracing::info!(user = %user.username, role = role.as_str(), team = %team.name, "user created");
            Ok(())
        }
        Command::ApiKey {
            command:
                ApiKeyCommand::Create {
                    user,
                    project,
                    name,
                },
        } => {
            let key = hone_server::cli::api_key::create(&services, &user, project, &name).await?;
            // The key, alone on standard output, for scripts to capture.
            #[allow(clippy::print_stdout)]
            {
                println!("{key}");
            }
            Ok(())
        }
    }
}

/// `hone dataset …`: plain file work, no database.
#[allow(clippy::print_stdout)]
fn dataset(command: DatasetCommand) -> anyhow::Result<()> {
    match command {
        DatasetCommand::Check {
            file,
            json,
            columns,
            tokens,
        } => {
            let mut opts = columns.options();
            let counting = tokens.load()?;
            let measure = counting.as_ref().map(|(t, max)| {
                opts.max_tokens = *max;
                t as &dyn hone_dataset::Measure
            });
            let report = dataset_cli::check_file(&file, &opts, measure)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", dataset_cli::render(&file, &report));
            }
            if report.has_errors() {
                std::process::exit(1);
            }
            Ok(())
        }
        DatasetCommand::Split {
            file,
            seed,
            ratios,
            out,
            columns,
            tokens,
        } => {
            let mut opts = columns.options();
            let counting = tokens.load()?;
            let measure = counting.as_ref().map(|(t, max)| {
                opts.max_tokens = *max;
                t as &dyn hone_dataset::Measure
            });
            let [train, validation, test] =
                dataset_cli::split_file(&file, &opts, measure, seed, ratios, &out)?;
            println!("{train} train, {validation} validation, {test} test examples written to {} (seed {seed})", out.display());
            Ok(())
        }
    }
}

/// A one-time setup token when nobody has an account yet and the server
/// listens beyond loopback: whoever reaches a fresh server first must also
/// be able to read its log. Printed (standard error, in the log) once.
async fn setup_token(services: &Services) -> anyhow::Result<Option<String>> {
    if services.config.bind.ip().is_loopback() || services.user_count().await? > 0 {
        return Ok(None);
    }
    let token = hone_server::openai::auth::new_secret().key["sk-hone-".len()..][..24].to_owned();
    let url = services.config.public_url.trim_end_matches('/');
    tracing::warn!(
        "First-run setup: nobody has an account yet and this server is reachable from other machines. Open {url}/setup?token={token} to create the administrator (the token is needed once)."
    );
    Ok(Some(token))
}

async fn serve(services: Arc<Services>) -> anyhow::Result<()> {
    let swept = services
        .blobs
        .sweep_temporary()
        .await
        .context("cleaning interrupted uploads")?;
    if swept > 0 {
        tracing::info!(count = swept, "removed files of interrupted uploads");
    }
    let mut supervisor = Supervisor::new();
    let db = services.db.clone();
    let purging = services.clone();
    supervisor.spawn("expired sessions", move |mut shutdown| {
        let store = sessions::DbSessionStore::new(db.clone());
        let purge = purging.clone();
        async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(600));
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    () = shutdown.wait() => return,
                }
                if let Err(e) = store.delete_expired().await {
                    tracing::warn!(error = %e, "deleting expired sessions failed");
                }
                if let Err(e) = purge.purge_throttle().await {
                    tracing::warn!(error = %e, "purging old sign-in throttle rows failed");
                }
            }
        }
    });
    let sweeping = services.clone();
    supervisor.spawn("unreferenced blobs", move |mut shutdown| {
        let s = sweeping.clone();
        async move {
            let mut every = tokio::time::interval(hone_server::retention::SWEEP_EVERY);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    () = shutdown.wait() => return,
                }
                match s.sweep_orphans(hone_server::retention::ORPHAN_GRACE).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(count = n, "removed unreferenced blobs"),
                    Err(e) => tracing::warn!(error = %e, "sweeping unreferenced blobs failed"),
                }
            }
        }
    });
    let checks = services.clone();
    supervisor.spawn("file checks", move |shutdown| {
        let s = checks.clone();
        async move { s.check_files(shutdown).await }
    });
    let dataset_checks = services.clone();
    supervisor.spawn("dataset checks", move |shutdown| {
        let s = dataset_checks.clone();
        async move { s.check_datasets(shutdown).await }
    });
    let hub_services = services.clone();
    supervisor.spawn("event hub", move |shutdown| {
        let s = hub_services.clone();
        async move { s.hub.run(s.db.clone(), shutdown).await }
    });
    // Every server runs a scheduler; the one holding the leader lease
    // decides for all workers.
    let scheduling = services.clone();
    supervisor.spawn("scheduler", move |shutdown| {
        hone_server::jobs::scheduler::run(scheduling.clone(), shutdown)
    });
    if services.config.workers != Some(0) {
        hone_server::jobs::worker::start_pool(&mut supervisor, &services, services.config.workers)
            .await;
    }
    let stop = supervisor.stopper();
    let config = services.config.clone();
    let listener = hone_server::http::serve::listen(config.bind)
        .with_context(|| format!("listening on {}", config.bind))?;
    let addr = listener.local_addr()?;
    tracing::info!(url = %format!("http://{addr}"), data_dir = %config.data_dir.display(), "Hone is listening");
    // The one line scripts and tests wait for.
    #[allow(clippy::print_stdout)]
    {
        println!("Hone is running at http://{addr}");
    }
    let limits = hone_server::http::serve::Limits {
        header_timeout: std::time::Duration::from_millis(config.header_timeout_ms),
        max_connections: config.max_connections,
    };
    hone_server::http::serve::serve(listener, router(services), limits, async move {
        shutdown_signal().await;
        // Workers start checkpointing and event streams end at once, so
        // requests drain while runs stop.
        stop();
    })
    .await?;
    // Requests have drained; runs get a grace period to checkpoint.
    supervisor.shutdown(SHUTDOWN_GRACE).await;
    tracing::info!("stopped");
    Ok(())
}

/// `hone devices`: the inventory workers here would report, as JSON.
async fn devices() -> anyhow::Result<()> {
    let config = Config::load()?;
    let found = match &config.devices {
        Some(d) => d.clone(),
        None => hone_server::jobs::worker::devices(&config.train_bin)
            .await
            .map_err(anyhow::Error::msg)?,
    };
    hone_protocol::check_inventory(&found)
        .map_err(|why| anyhow::anyhow!("the device inventory is refused: {why}"))?;
    let live = hone_server::jobs::nvml::Live::open();
    let report: Vec<serde_json::Value> = found
        .iter()
        .map(|d| {
            serde_json::json!({
                "device": d,
                "live": live.as_ref().and_then(|l| l.figures(d)),
            })
        })
        .collect();
    #[allow(clippy::print_stdout)]
    {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}

/// How long running jobs get to checkpoint at shutdown before their
/// engines are killed (the job then resumes from its previous checkpoint).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(120);

/// `hone worker`: workers alone, until SIGTERM.
async fn workers_only(services: Arc<Services>, slots: Option<usize>) -> anyhow::Result<()> {
    let mut supervisor = Supervisor::new();
    let started = hone_server::jobs::worker::start_pool(&mut supervisor, &services, slots).await;
    #[allow(clippy::print_stdout)]
    {
        println!("Hone worker running with {started} slot(s)");
    }
    shutdown_signal().await;
    supervisor.shutdown(SHUTDOWN_GRACE).await;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C: in-flight requests finish, new ones are refused.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
