//! bridge-agent: a Link Bridge agent (seed 003) for instances that do not embed
//! `coordlab::bridge::Agent`. It registers the instances it is given through any
//! broker, answers the brokers' pings, and on SIGTERM / Ctrl-C sends a shutdown
//! notice for each, waits out the grace period (clients move off meanwhile), and
//! leaves.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Parser;
use coordlab::bridge::{Agent, AgentConfig};

#[derive(Parser, Debug)]
#[command(
    name = "bridge-agent",
    about = "Register gRPC instances with Link Bridge"
)]
struct Args {
    /// This agent's id.
    #[arg(long)]
    id: String,
    /// A broker's address (host:port); repeat for failover.
    #[arg(long = "broker", required = true)]
    brokers: Vec<String>,
    /// An instance to register: SERVICE/INSTANCE=HOST:PORT; repeat for more.
    #[arg(long = "instance", required = true, value_parser = parse_instance)]
    instances: Vec<Instance>,
    /// How long clients have to move off an instance before the agent stops.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    grace: Duration,
    /// Wait between two failed connection attempts.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    retry_interval: Duration,
    /// Log lines as text (coloured only on a terminal) or JSON; RUST_LOG filters.
    #[arg(long, value_enum, default_value_t)]
    log_format: coordlab::logs::LogFormat,
}

#[derive(Debug, Clone)]
struct Instance {
    service: String,
    id: String,
    address: String,
}

fn parse_instance(text: &str) -> Result<Instance, String> {
    let (name, address) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not SERVICE/INSTANCE=HOST:PORT"))?;
    let (service, id) = name
        .split_once('/')
        .ok_or_else(|| format!("{name:?} is not SERVICE/INSTANCE"))?;
    address
        .parse::<std::net::SocketAddr>()
        .map_err(|e| format!("instance address {address:?}: {e}"))?;
    Ok(Instance {
        service: service.into(),
        id: id.into(),
        address: address.into(),
    })
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    coordlab::logs::init(args.log_format, "info");
    if let Err(e) = run(args).await {
        eprintln!("bridge-agent: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), String> {
    let stop = stop_signal();
    let agent = Agent::start(AgentConfig {
        id: args.id,
        brokers: args.brokers,
        retry_interval: args.retry_interval,
        connect_timeout: Duration::from_secs(5),
    })
    .map_err(|e| e.to_string())?;
    for i in &args.instances {
        agent
            .register(&i.service, &i.id, &i.address, BTreeMap::new())
            .await
            .map_err(|e| format!("registering {}/{}: {e}", i.service, i.id))?;
        tracing::info!(service = %i.service, instance = %i.id, address = %i.address, "registered");
    }
    stop.await;
    tracing::info!(grace = ?args.grace, "stopping: shutdown notices sent, waiting out the grace period");
    for i in &args.instances {
        agent
            .shutdown_notice(&i.service, &i.id, args.grace)
            .await
            .map_err(|e| format!("shutdown notice for {}/{}: {e}", i.service, i.id))?;
    }
    tokio::time::sleep(args.grace).await;
    agent.leave().await.map_err(|e| format!("leaving: {e}"))
}

/// Completes on Ctrl-C or (on Unix, outside the simulator) SIGTERM. Listening
/// starts when this is called, not when the future is first polled: a SIGTERM
/// right after the registrations must not find the default action (exit at once).
fn stop_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(all(unix, not(madsim)))]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let ctrl_c = tokio::signal::ctrl_c();
    async move {
        #[cfg(all(unix, not(madsim)))]
        if let Some(mut term) = term {
            tokio::select! {
                biased;
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = ctrl_c.await;
    }
}
