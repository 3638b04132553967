//! The `harmony` command: serve the API, run migrations, write the OpenAPI document, and
//! start a demo clinic for a first look.

use std::net::TcpListener;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use harmony_core::config::Config;
use harmony_core::rbac::Role;
use harmony_core::server::Background;

// glibc's allocator spent a sixth of the server's time in malloc and free under load;
// jemalloc's per-thread caches cut the server's CPU per request by about a fifth. (mimalloc
// was as fast but doubled the idle resident memory.)
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(
    name = "harmony",
    version,
    about = "The management platform of aesthetics clinics"
)]
struct Cli {
    /// A TOML file overriding config/default.toml (secrets are never read from it).
    #[arg(long, global = true, env = "HARMONY_CONFIG")]
    config: Option<PathBuf>,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending migrations, then serve the API.
    Serve,
    /// Apply pending migrations and exit.
    Migrate,
    /// Create the database roles and the database (needs `database.admin_url`).
    Setup,
    /// Development: create everything, seed a demo clinic and serve it with throwaway keys.
    Demo,
    /// After a master-key rotation: re-wrap every clinic's key with the current master key.
    RewrapKeys,
    /// Talk to a clinic's WhatsApp assistant in the terminal, as the contact `--phone`
    /// (development: creates and seeds the demo clinic if needed, like `demo`).
    Chat {
        /// The clinic's id, or its name as a slug (`clinica-harmonia-demo`).
        #[arg(long, default_value = "clinica-harmonia-demo")]
        clinic: String,
        /// The contact's phone, e.g. `+55 11 98765-4321`.
        #[arg(long)]
        phone: String,
    },
    /// Write the OpenAPI document (to stdout, or to `--out`).
    Openapi {
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write the role policy generated from the modules' permissions.
    RbacPolicy {
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Internal: host one plugin library in this process, speaking to the server over
    /// stdin and stdout. The server starts it; people do not.
    #[command(hide = true)]
    PluginHost {
        #[arg(long)]
        library: PathBuf,
        #[arg(long)]
        sha256: String,
        #[arg(long, default_value_t = 512)]
        memory_limit_mb: u64,
    },
}

fn main() -> anyhow::Result<()> {
    quiet_error_backtraces();
    let cli = Cli::parse();
    // A plugin host runs no runtime, no logging and no server: only the plugin.
    if let Command::PluginHost {
        library,
        sha256,
        memory_limit_mb,
    } = &cli.command
    {
        let code = harmony_core::plugins::child::run(harmony_core::plugins::child::ChildArgs {
            library,
            sha256,
            memory_limit_mb: *memory_limit_mb,
        });
        std::process::exit(code);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli))
}

/// Errors carry no backtrace unless `RUST_LIB_BACKTRACE` asks for one. Logged errors show
/// their cause chain, never a backtrace, yet with `RUST_BACKTRACE=1` (wanted for panics)
/// every internal error would walk its stack when made: a refused booking makes two.
/// Panics keep following `RUST_BACKTRACE`.
fn quiet_error_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: the first statement of `main`, before any other thread exists, so
        // nothing can read the environment while it changes.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("RUST_LIB_BACKTRACE", "0");
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    init_logging(cli.log_json);
    let load = || Config::load(cli.config.as_deref()).context("loading configuration");
    match cli.command {
        Command::Openapi { out } => write_or_print(out, &harmony::openapi_document()),
        Command::RbacPolicy { out } => write_or_print(out, &harmony::rbac_policy()),
        Command::Migrate => {
            let applied = harmony::migrate(&load()?).await?;
            tracing::info!(applied, "migrations applied");
            Ok(())
        }
        Command::RewrapKeys => {
            let config = load()?;
            let kernel = harmony::start_kernel(config).await?;
            let rewrapped = kernel.crypto.rewrap_tenant_keys(&kernel.db).await?;
            tracing::info!(
                rewrapped,
                "clinic keys now wrapped by the current master key"
            );
            Ok(())
        }
        Command::Setup => {
            let config = load()?;
            setup(&config).await
        }
        Command::Serve => {
            let mut config = load()?;
            config.ensure_secrets()?;
            harmony::migrate(&config).await?;
            serve(config, None).await
        }
        Command::Demo => {
            let mut config = load()?;
            config.dev.mode = true;
            config.ensure_secrets()?;
            setup(&config).await?;
            harmony::migrate(&config).await?;
            serve(config, Some(())).await
        }
        Command::Chat { clinic, phone } => {
            let mut config = load()?;
            let throwaway = config.crypto.master_key.is_none();
            config.dev.mode = true;
            config.ensure_secrets()?;
            setup(&config).await?;
            harmony::migrate(&config).await?;
            let kernel = harmony::start_kernel(config).await?;
            harmony_core::demo::seed(&kernel, &harmony::modules()).await?;
            let (tenant, name) = harmony_whatsapp::chat::find_clinic(&kernel, &clinic)
                .await?
                .with_context(|| format!("no clinic is called {clinic} (try its id)"))?;
            if let Err(err) = harmony_whatsapp::chat::check_keys(&kernel, tenant).await {
                let err = anyhow::Error::from(err);
                return Err(if throwaway {
                    err.context(
                        "this clinic was made with other keys: set HARMONY__CRYPTO__MASTER_KEY \
                         and HARMONY__AUTH__JWT_SECRET to the same values for `demo` and \
                         `chat`, or start from a new database",
                    )
                } else {
                    err
                });
            }
            harmony_whatsapp::chat::run(&kernel, tenant, &name, &phone).await
        }
        Command::PluginHost { .. } => Ok(()),
    }
}

fn write_or_print(out: Option<PathBuf>, text: &str) -> anyhow::Result<()> {
    match out {
        Some(path) => {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
        }
        None => {
            use std::io::Write as _;
            std::io::stdout().write_all(text.as_bytes())?;
            Ok(())
        }
    }
}

/// The database named by the application URL, e.g. `harmony`.
fn database_name(url: &str) -> anyhow::Result<&str> {
    let path = url
        .rsplit_once('/')
        .map(|(_, db)| db)
        .context("database.url has no database name")?;
    Ok(path.split('?').next().unwrap_or(path))
}

async fn setup(config: &Config) -> anyhow::Result<()> {
    let name = database_name(&config.database.url)?;
    harmony_core::db::ensure_database(
        &config.database.admin_url,
        name,
        config.database.password.as_ref(),
    )
    .await
    .context(
        "creating roles and database (is PostgreSQL running, and database.admin_url a superuser?)",
    )
}

async fn serve(config: Config, demo: Option<()>) -> anyhow::Result<()> {
    let bind = config.server.bind.clone();
    let public_url = config.server.public_url.clone();
    let kernel = harmony::start_kernel(config).await?;
    let modules = harmony::modules();
    if demo.is_some() {
        harmony_core::demo::seed(&kernel, &modules).await?;
    }
    let background = Background::start(&kernel, &modules).await?;
    let listener = TcpListener::bind(&bind).with_context(|| format!("binding {bind}"))?;

    announce(&public_url, demo.is_some());
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    };
    harmony_core::server::serve(kernel, harmony::api(), listener, shutdown).await?;
    background.stop().await;
    Ok(())
}

#[expect(
    clippy::print_stdout,
    reason = "the demo's greeting is for the person who ran it"
)]
fn announce(url: &str, demo: bool) {
    println!("\nHarmony is running at {url}");
    println!("  API docs:   {url}/docs");
    println!("  OpenAPI:    {url}/openapi.json");
    println!("  Health:     {url}/healthz  {url}/readyz  {url}/metrics");
    if demo {
        println!(
            "\nDemo clinic \"Clínica Harmonia (demo)\" — password for every login: {}",
            harmony_core::demo::DEMO_PASSWORD
        );
        for (role, name) in harmony_core::demo::DEMO_STAFF {
            println!(
                "  {:<13} {:<40} {}",
                role.as_str(),
                harmony_core::demo::demo_email(role),
                name
            );
        }
        println!("\nTry: curl -s {url}/api/v1/auth/login -H 'content-type: application/json' \\");
        println!(
            "       -d '{{\"email\":\"{}\",\"password\":\"{}\"}}'",
            harmony_core::demo::demo_email(Role::Owner),
            harmony_core::demo::DEMO_PASSWORD
        );
    }
    println!();
}

fn init_logging(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tokio_cron_scheduler=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}
