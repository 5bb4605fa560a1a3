//! The `portico` command: parses arguments and hands over to the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

const EXAMPLES: &str = "\
Examples:
  portico demo                                  # demo Front End pool + proxy on loopback, prints curl lines
  portico validate --config /etc/portico/portico.toml
  portico run --config /etc/portico/portico.toml
  portico reload --config /etc/portico/portico.toml    # validate, then ask the running instance to reload
  portico health --config /etc/portico/portico.toml    # exit 0 when that instance should hold traffic (keepalived)
  portico check --config /etc/portico/portico.toml --ca contoso-root.pem
  portico check --webext lyncweb.contoso.com --lyncdiscover lyncdiscover.contoso.com \\
                --meet meet.contoso.com --resolve lyncweb.contoso.com:443:203.0.113.10
  portico init sfb --sip-domain contoso.com --webext lyncweb.contoso.com --pool pool01.contoso.local \\
      --members fe01.contoso.local=10.0.1.11 --output portico.toml
  portico import-iis applicationHost.config > portico.toml

The config file format is described in docs/configuration.md; examples/ holds complete files.";

#[derive(Parser)]
#[command(name = "portico", version, about = "A reverse proxy for the perimeter network: publishes Skype for Business, Exchange and Office Online Server like IIS ARR does", after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a config until SIGTERM/SIGINT (graceful).
    Run {
        /// The config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a config file (certificates, rules, farms) without serving it. Exit 0 when valid.
    Validate {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file, then ask the running Portico (through its [admin] listener) to
    /// reload it. Exit 0 only if the running instance accepted the new config.
    Reload {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Is the instance running this config ready to hold traffic? Exit 0 when it is, 1 when it
    /// is not (draining, no listener, no farm with a member up) and 2 when no instance answers;
    /// one line says why. For keepalived's vrrp_script; needs no [admin] and no token.
    Health {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Start demo Front End / Office Online members and a Portico in front of them, on loopback.
    Demo(portico::demo::DemoOptions),
    /// Connectivity analyzer: checks TLS, the SfB / Exchange / Office Online web services and
    /// signs of wrong port bridging or SSL offloading on published names. Exit 0 when every
    /// required check passed (docs/check.md lists the checks).
    Check(portico::check::CheckOptions),
    /// Write a complete, commented config for Skype for Business, Exchange or Office Online Server.
    Init {
        #[command(subcommand)]
        profile: portico::profiles::cli::InitCommand,
    },
    /// Translate an IIS ARR applicationHost.config into a Portico config (stdout); warnings on stderr.
    ImportIis(portico::import::ImportArgs),
    /// Run one demo member alone (benchmarks and manual tests use it as a backend).
    #[command(hide = true)]
    Member {
        /// Address to listen on.
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// PEM certificate chain; with --key, serve HTTPS.
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        #[arg(long)]
        key: Option<PathBuf>,
        /// Name returned in X-Backend.
        #[arg(long, default_value = "member")]
        name: String,
        /// Which site it plays: front-end (SfB), oos, exchange, echo.
        #[arg(long, default_value = "front-end")]
        role: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { config } => match portico::config::load(&config) {
            Ok(c) => {
                println!(
                    "{}: valid ({} listener(s), {} farm(s), {} rule(s))",
                    config.display(),
                    c.listeners.len(),
                    c.farms.len(),
                    c.rules.len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::FAILURE
            }
        },
        Command::Run { config } => {
            let loaded = match portico::config::load(&config) {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::FAILURE;
                }
            };
            init_logging(loaded.log.level.as_deref());
            let workers = loaded.workers;
            report(serving_runtime(workers).and_then(|rt| {
                rt.block_on(portico::server::run_until_signal(loaded, config))
                    .context("portico could not start")
            }))
        }
        Command::Reload { config } => reload(&config),
        Command::Health { config } => health(&config),
        Command::Member {
            listen,
            cert,
            key,
            name,
            role,
        } => {
            init_logging(Some("warn"));
            report(runtime(None).and_then(|rt| {
                rt.block_on(portico::demo::run_member(listen, cert, key, name, &role))
            }))
        }
        Command::Check(opts) => check(opts),
        Command::Init { profile } => match portico::profiles::cli::run(&profile) {
            Ok(Some(text)) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Ok(None) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::ImportIis(args) => portico::import::run(&args),
        Command::Demo(opts) => {
            init_logging(None);
            report(serving_runtime(None).and_then(|rt| rt.block_on(portico::demo::run(opts))))
        }
    }
}

/// `portico reload`: the file must validate here first, so a typo is reported with its line
/// before the running instance is bothered; then `/api/reload` on the admin listener.
fn reload(config: &std::path::Path) -> ExitCode {
    let loaded = match portico::config::load(config) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("not reloaded: the running instance keeps its config");
            return ExitCode::FAILURE;
        }
    };
    let Some(admin) = &loaded.admin else {
        eprintln!(
            "{}: no [admin] table, so there is no admin listener to ask; reload with `kill -HUP <pid>` (or `systemctl reload portico`) instead",
            config.display()
        );
        return ExitCode::FAILURE;
    };
    let result = runtime(Some(1)).and_then(|rt| {
        rt.block_on(portico::admin::client::request_reload(admin))
            .map_err(anyhow::Error::from)
    });
    match result {
        Ok(done) => {
            let running = done.config_file.as_deref().map(std::path::Path::new);
            let same = match (
                running.and_then(|p| p.canonicalize().ok()),
                config.canonicalize(),
            ) {
                (Some(a), Ok(b)) => a == b,
                _ => true,
            };
            println!(
                "{}: {} by the instance on {}",
                config.display(),
                done.message,
                portico::admin::client::connect_addr(admin.bind)
            );
            if !same {
                eprintln!(
                    "note: that instance reads {}, not {}",
                    running.map(|p| p.display().to_string()).unwrap_or_default(),
                    config.display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", causes(&e));
            ExitCode::FAILURE
        }
    }
}

/// `portico health`: asks the running instance(s) over their health socket (src/health.rs);
/// no config compile, no runtime, so it answers in milliseconds.
fn health(config: &std::path::Path) -> ExitCode {
    let file_digest = std::fs::read(config)
        .ok()
        .map(|b| portico::config::digest(&b));
    match portico::health::query(config) {
        Ok(answers) => {
            let (ready, line) = portico::health::verdict(&answers, file_digest.as_deref());
            println!("{line}");
            if ready {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            println!("{e}");
            ExitCode::from(2)
        }
    }
}

/// `portico check`: progress on stderr, the report on stdout, exit 1 when a check failed and
/// 2 when nothing could be checked (bad arguments or config).
fn check(opts: portico::check::CheckOptions) -> ExitCode {
    use std::io::{IsTerminal, Write};
    let rt = match runtime(Some(2)) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {}", causes(&e));
            return ExitCode::from(2);
        }
    };
    let tty = std::io::stderr().is_terminal();
    let mut progress = move |line: &str| {
        let mut err = std::io::stderr().lock();
        if tty {
            let _ = write!(err, "\r\x1b[2Kchecking {line}");
        } else {
            let _ = writeln!(err, "checking {line}");
        }
        let _ = err.flush();
    };
    let result = rt.block_on(portico::check::run(&opts, &mut progress));
    if tty {
        eprint!("\r\x1b[2K");
    }
    match result {
        Ok(report) => {
            if opts.json {
                print!("{}", portico::check::render_json(&report));
            } else {
                print!("{}", portico::check::render_text(&report));
            }
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn runtime(workers: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        b.worker_threads(n);
    }
    b.enable_all()
        .thread_name("portico-worker")
        .build()
        .context("cannot start the async runtime")
}

/// For `run` and `demo`: `workers` threads (default: one per core) serve the listeners, each
/// on its own runtime (`portico::worker`); one more thread runs everything else.
fn serving_runtime(workers: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let n = workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    portico::worker::start(n).context("cannot start the worker threads")?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("portico-control")
        .build()
        .context("cannot start the async runtime")
}

fn init_logging(level: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level.unwrap_or("info")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// An error and its causes, each once: the library's messages already name their cause
/// ("cannot listen on ...: Address not available (os error 99)"), and anyhow's `{:#}` would
/// print that cause a second time.
fn causes(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", causes(&e));
            ExitCode::FAILURE
        }
    }
}
