//! The `hone` binary: `hone serve` (the default) runs the web server;
//! `hone user create` adds an account without the browser.

use anyhow::Context;
use clap::{Parser, Subcommand};
use hone_app::api::Role;
use hone_server::backend::Services;
use hone_server::config::Config;
use hone_server::{db, router, sessions, storage::BlobStore};
use std::io::BufRead;
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
    /// Run the web server (the default).
    Serve,
    /// Manage accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
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
    let config = Config::load()?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let db = db::connect(config.database_url.as_deref(), &config.data_dir).await?;
    let blobs = BlobStore::local(&config.data_dir.join("files")).context("opening file storage")?;
    let services = Arc::new(Services { db, blobs, config });
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(services).await,
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
    }
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
    let store = sessions::DbSessionStore::new(services.db.clone());
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(600));
        loop {
            every.tick().await;
            if let Err(e) = store.delete_expired().await {
                tracing::warn!(error = %e, "deleting expired sessions failed");
            }
        }
    });
    let config = services.config.clone();
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("listening on {}", config.bind))?;
    let addr = listener.local_addr()?;
    tracing::info!(url = %format!("http://{addr}"), data_dir = %config.data_dir.display(), "Hone is listening");
    // The one line scripts and tests wait for.
    #[allow(clippy::print_stdout)]
    {
        println!("Hone is running at http://{addr}");
    }
    axum::serve(
        listener,
        router(services).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
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
