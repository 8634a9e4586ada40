//! `strom-broker [server.properties] [--override key=value]... [--node-id-from-hostname BASE]`

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use strom_broker::config::BrokerConfig;
use strom_broker::server::{ScramSeed, Server};
use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Strom: a Kafka-compatible broker. With no arguments, a single node on localhost:9092
/// with data in ./data.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// A Kafka-style server.properties file.
    config: Option<PathBuf>,
    /// Set a property, overriding the file and STROM_* environment variables.
    #[arg(long = "override", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Log format: human-readable text or JSON lines for containers.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Seed a SCRAM credential, as Kafka's `kafka-storage format --add-scram` does, once per
    /// cluster: `SCRAM-SHA-512=[name=admin,password=secret]`.
    #[arg(long = "add-scram", value_name = "MECHANISM=[name=...,password=...]")]
    add_scram: Vec<ScramSeed>,
    /// Set `node.id` to BASE plus the ordinal that ends this host's name (`demo-brokers-2`
    /// gives BASE + 2): a StatefulSet pod finds its id without a shell.
    #[arg(long, value_name = "BASE")]
    node_id_from_hostname: Option<i32>,
}

/// The StatefulSet ordinal that ends a host name (`demo-brokers-2` → 2).
fn ordinal(hostname: &str) -> Option<i32> {
    let (_, digits) = hostname.trim().rsplit_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `node.id` for `--node-id-from-hostname BASE`.
fn node_id_from_hostname(base: i32) -> Result<i32, String> {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .map_err(|e| format!("--node-id-from-hostname: cannot read the host name: {e}"))?;
    let ordinal = ordinal(&hostname).ok_or_else(|| {
        format!(
            "--node-id-from-hostname: host name {:?} does not end in -<ordinal>",
            hostname.trim()
        )
    })?;
    base.checked_add(ordinal)
        .ok_or_else(|| format!("--node-id-from-hostname: {base} + {ordinal} overflows"))
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if let Some(base) = args.node_id_from_hostname {
        match node_id_from_hostname(base) {
            Ok(id) => args.overrides.push(format!("node.id={id}")),
            Err(e) => {
                eprintln!("strom-broker: configuration error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,openraft=error"));
    match args.log_format {
        // Colours only on a terminal; a redirected log stays plain text.
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::stdout().is_terminal())
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
    }
    let config = match BrokerConfig::load(args.config.as_deref(), std::env::vars(), &args.overrides)
    {
        Ok(config) => config,
        Err(e) => {
            eprintln!("strom-broker: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    raise_open_file_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("strom-broker: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let server = match Server::start_with(config, args.add_scram).await {
            Ok(server) => server,
            Err(e) => {
                eprintln!("strom-broker: {e}");
                return ExitCode::FAILURE;
            }
        };
        wait_for_signal().await;
        server.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// Segment files are held open up to half of the soft limit on open files (often 1024), so
/// it is raised to the hard limit, as the JVM does for Kafka.
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    // An unlimited hard limit still stops at the kernel's nr_open, 1,048,576 by default.
    const UNLIMITED_CAP: u64 = 1 << 20;
    let limit = getrlimit(Resource::Nofile);
    let target = limit.maximum.unwrap_or(UNLIMITED_CAP);
    let Some(current) = limit.current.filter(|current| *current < target) else {
        return;
    };
    let raised = Rlimit {
        current: Some(target),
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::info!(from = current, to = target, "raised the open file limit"),
        Err(e) => {
            tracing::warn!(limit = current, error = %e, "could not raise the open file limit")
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::ordinal;

    #[test]
    fn the_ordinal_ends_the_host_name() {
        assert_eq!(ordinal("demo-brokers-2"), Some(2));
        assert_eq!(ordinal("demo-brokers-13\n"), Some(13));
        assert_eq!(ordinal("laptop"), None);
        assert_eq!(ordinal("demo-brokers-"), None);
        assert_eq!(ordinal("demo-brokers-x1"), None);
        assert_eq!(ordinal("demo-brokers-99999999999"), None);
    }
}
