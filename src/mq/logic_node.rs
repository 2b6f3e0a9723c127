//! The LogicNode (seed 000): a broker and a coo in one process, talking in-process
//! while the local coo leads (Local mode) and over gRPC to the leader coo otherwise
//! (External mode).
//!
//! Exactly one communication loop runs at a time. A watcher checks the coo's
//! leadership every second and signals only on change; External mode switches to
//! Local on that signal, Local mode switches to External when its coo answers
//! `NotLeader`. Every switch stops the old loop and releases its state receiver
//! (`unleash_state_receiver`) before the new loop starts, and is logged and counted.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::broker::Broker;
use super::client::CooClient;
use super::coo::Coo;
use crate::client::ConnectionConfig;
use crate::raft::RaftError;
use crate::seams::clock::Clock;
use crate::seams::mutants;
use crate::seams::observer::{Event, Observer};
use crate::sync::watch;

/// How often the broker reports and the watcher checks leadership.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// A pull stream that delivered nothing for this long is reopened (a partition can
/// leave a stream open but silent).
const PULL_IDLE_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Local,
    External,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Local => "local",
            Mode::External => "external",
        }
    }
}

/// What `coordctl status` shows of a LogicNode.
#[derive(Debug, Default)]
pub struct LogicNodeMetrics {
    /// 0: no loop, 1: local, 2: external.
    mode: AtomicU8,
    switches: AtomicU64,
}

impl LogicNodeMetrics {
    pub fn mode(&self) -> Option<Mode> {
        match self.mode.load(Ordering::SeqCst) {
            1 => Some(Mode::Local),
            2 => Some(Mode::External),
            _ => None,
        }
    }

    pub fn switches(&self) -> u64 {
        self.switches.load(Ordering::SeqCst)
    }

    fn set_mode(&self, mode: Option<Mode>) {
        let code = match mode {
            None => 0,
            Some(Mode::Local) => 1,
            Some(Mode::External) => 2,
        };
        self.mode.store(code, Ordering::SeqCst);
    }
}

/// Why a loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoopExit {
    Stopped,
    NotLeader,
}

#[derive(Default)]
pub struct LogicNodeBuilder {
    id: Option<u64>,
    broker: Option<Arc<Broker>>,
    coo: Option<Coo>,
    coo_endpoints: Vec<String>,
    clock: Option<Arc<dyn Clock>>,
    observer: Option<Arc<dyn Observer>>,
}

impl LogicNodeBuilder {
    pub fn id(mut self, id: u64) -> Self {
        self.id = Some(id);
        self
    }
    pub fn broker(mut self, broker: Arc<Broker>) -> Self {
        self.broker = Some(broker);
        self
    }
    pub fn coo(mut self, coo: Coo) -> Self {
        self.coo = Some(coo);
        self
    }
    /// Where External mode finds the coos (any of them; the client follows the leader).
    pub fn coo_endpoints(mut self, endpoints: Vec<String>) -> Self {
        self.coo_endpoints = endpoints;
        self
    }
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    pub fn build(self) -> Result<LogicNode, String> {
        let id = self.id.ok_or("a LogicNode needs an id")?;
        if self.broker.is_none() && self.coo.is_none() {
            return Err("a LogicNode needs a broker, a coo, or both".into());
        }
        if self.broker.is_some() && self.coo.is_none() && self.coo_endpoints.is_empty() {
            return Err("a broker without a local coo needs coo endpoints".into());
        }
        Ok(LogicNode {
            id,
            broker: self.broker,
            coo: self.coo,
            coo_endpoints: self.coo_endpoints,
            clock: self.clock.ok_or("a LogicNode needs a clock")?,
            observer: self
                .observer
                .unwrap_or_else(|| Arc::new(crate::seams::observer::NoopObserver)),
            metrics: Arc::default(),
        })
    }
}

pub struct LogicNode {
    id: u64,
    broker: Option<Arc<Broker>>,
    coo: Option<Coo>,
    coo_endpoints: Vec<String>,
    clock: Arc<dyn Clock>,
    observer: Arc<dyn Observer>,
    metrics: Arc<LogicNodeMetrics>,
}

type LoopTask = (oneshot::Sender<()>, tokio::task::JoinHandle<LoopExit>);

impl LogicNode {
    pub fn builder() -> LogicNodeBuilder {
        LogicNodeBuilder::default()
    }

    pub fn metrics(&self) -> Arc<LogicNodeMetrics> {
        self.metrics.clone()
    }

    fn own_coo_leads(&self) -> bool {
        self.coo.as_ref().is_some_and(Coo::is_leader)
    }

    /// Checks leadership every second; signals only on change.
    fn start_watcher(&self, tx: watch::Sender<bool>) -> Option<tokio::task::JoinHandle<()>> {
        let coo = self.coo.clone()?;
        let clock = self.clock.clone();
        Some(tokio::spawn(async move {
            let mut last = *tx.borrow();
            let mut signalled = false;
            loop {
                clock.sleep(WATCH_INTERVAL).await;
                let now = coo.is_leader();
                if now != last {
                    last = now;
                    if signalled && mutants::active("watcher_first_change_only") {
                        continue;
                    }
                    signalled = true;
                    tracing::debug!(leader = now, "coo leadership changed");
                    let _ = tx.send(now);
                }
            }
        }))
    }

    fn start_loop(&self, mode: Mode) -> LoopTask {
        let broker = self.broker.clone().expect("loops run with a broker");
        let (stop_tx, stop_rx) = oneshot::channel();
        self.observer
            .observe(self.id, &Event::LoopStarted { mode: mode.name() });
        self.metrics.set_mode(Some(mode));
        let task = match mode {
            Mode::Local => {
                let coo = self.coo.clone().expect("Local mode needs the local coo");
                tokio::spawn(run_local(broker, coo, self.observer.clone(), stop_rx))
            }
            Mode::External => {
                // Reports repeat every second: no point retrying one for long.
                let config = ConnectionConfig::new(self.coo_endpoints.clone())
                    .until(Duration::from_secs(2), Duration::from_secs(4));
                tokio::spawn(run_external(
                    broker,
                    config,
                    self.observer.clone(),
                    self.clock.clone(),
                    stop_rx,
                ))
            }
        };
        (stop_tx, task)
    }

    async fn stop_loop(&self, mode: Mode, (stop, task): LoopTask) {
        let _ = stop.send(());
        let _ = task.await;
        self.observer
            .observe(self.id, &Event::LoopStopped { mode: mode.name() });
    }

    /// Runs until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let Some(broker) = self.broker.clone() else {
            // A coo alone: it serves through gRPC; nothing to loop.
            shutdown.await;
            self.observer.observe(self.id, &Event::LogicNodeStopped);
            return;
        };
        let reporter = tokio::spawn(broker.run_reporter(self.clock.clone(), REPORT_INTERVAL));
        let (watch_tx, mut leadership) = watch::channel(self.own_coo_leads());
        let watcher = self.start_watcher(watch_tx);
        let mut mode = if self.own_coo_leads() {
            Mode::Local
        } else {
            Mode::External
        };
        let mut current = self.start_loop(mode);
        loop {
            let next = tokio::select! {
                biased;
                _ = &mut shutdown => None,
                exit = &mut current.1 => {
                    self.observer.observe(self.id, &Event::LoopStopped { mode: mode.name() });
                    match exit {
                        Ok(LoopExit::NotLeader) => Some(Mode::External),
                        _ => Some(mode),
                    }
                }
                changed = leadership.changed(), if mode == Mode::External && self.coo.is_some() => {
                    if changed.is_ok() && *leadership.borrow_and_update() {
                        Some(Mode::Local)
                    } else {
                        continue;
                    }
                }
            };
            let Some(next) = next else {
                if !current.1.is_finished() {
                    self.stop_loop(mode, current).await;
                }
                break;
            };
            let old = std::mem::replace(
                &mut current,
                (
                    oneshot::channel().0,
                    tokio::spawn(async { LoopExit::Stopped }),
                ),
            );
            let old_running = !old.1.is_finished();
            if mutants::active("start_before_stop") && old_running {
                current = self.start_loop(next);
                self.stop_loop(mode, old).await;
            } else {
                if old_running {
                    self.stop_loop(mode, old).await;
                }
                current = self.start_loop(next);
            }
            if next != mode {
                self.metrics.switches.fetch_add(1, Ordering::SeqCst);
                tracing::info!(
                    logic_node = self.id,
                    from = mode.name(),
                    to = next.name(),
                    "communication mode switched"
                );
                self.observer.observe(
                    self.id,
                    &Event::ModeSwitched {
                        from: mode.name(),
                        to: next.name(),
                    },
                );
            }
            mode = next;
        }
        reporter.abort();
        if let Some(w) = watcher {
            w.abort();
        }
        self.metrics.set_mode(None);
        self.observer.observe(self.id, &Event::LogicNodeStopped);
    }
}

/// Local mode: reports go straight into the local coo, topic infos come from the
/// local replica's committed metadata. Nothing touches the network.
async fn run_local(
    broker: Arc<Broker>,
    coo: Coo,
    observer: Arc<dyn Observer>,
    mut stop: oneshot::Receiver<()>,
) -> LoopExit {
    let mut receiver = broker.get_state_receiver("logic-node-local");
    let mut leader = coo.raft().leader_watch();
    let ignore_not_leader = mutants::active("ignore_not_leader_local");
    let exit = match coo.broker_pull(broker.id()) {
        Err(_) => LoopExit::NotLeader,
        Ok(mut topics) => {
            broker.apply_topic_infos(topics.borrow_and_update().clone());
            loop {
                tokio::select! {
                    biased;
                    _ = &mut stop => break LoopExit::Stopped,
                    // The coo lost leadership: the NotLeader every later call would get.
                    _ = leadership_lost(&mut leader), if !ignore_not_leader => break LoopExit::NotLeader,
                    report = receiver.reports.recv() => {
                        let Some(report) = report else { break LoopExit::Stopped };
                        let seq = report.seq;
                        // A pending proposal must not delay a stop or a step-down.
                        let outcome = tokio::select! {
                            biased;
                            _ = &mut stop => None,
                            _ = leadership_lost(&mut leader), if !ignore_not_leader => {
                                Some(Err(RaftError::NotLeader { leader_id: 0, leader_addr: None }))
                            }
                            r = coo.apply_broker_report(report) => Some(r),
                        };
                        match outcome {
                            None => break LoopExit::Stopped,
                            Some(Ok(_)) => observer.observe(broker.id(), &Event::ReportDelivered { seq, local: true }),
                            Some(Err(RaftError::NotLeader { .. })) if !ignore_not_leader => break LoopExit::NotLeader,
                            Some(Err(e)) => tracing::debug!(broker = broker.id(), error = %e, "local report failed"),
                        }
                    }
                    changed = topics.changed() => {
                        if changed.is_err() {
                            break LoopExit::Stopped;
                        }
                        broker.apply_topic_infos(topics.borrow_and_update().clone());
                    }
                }
            }
        }
    };
    if !mutants::active("keep_old_receiver") {
        broker.unleash_state_receiver(receiver.registration);
    }
    exit
}

/// Completes once this node no longer leads.
async fn leadership_lost(leader: &mut watch::Receiver<crate::raft::LeaderInfo>) {
    loop {
        if !leader.borrow_and_update().is_self {
            return;
        }
        if leader.changed().await.is_err() {
            return;
        }
    }
}

/// External mode: reports and the topic stream go over gRPC to the leader coo,
/// through clients that follow leader changes.
async fn run_external(
    broker: Arc<Broker>,
    config: ConnectionConfig,
    observer: Arc<dyn Observer>,
    clock: Arc<dyn Clock>,
    mut stop: oneshot::Receiver<()>,
) -> LoopExit {
    let mut receiver = broker.get_state_receiver("logic-node-external");
    let clients = (
        CooClient::for_broker(config.clone(), broker.id(), observer.clone()),
        CooClient::for_broker(config, broker.id(), observer.clone()),
    );
    let exit = match clients {
        (Ok(mut reports), Ok(pulls)) => {
            let puller = tokio::spawn(pull_topics(pulls, broker.clone(), clock));
            let exit = loop {
                tokio::select! {
                    biased;
                    _ = &mut stop => break LoopExit::Stopped,
                    report = receiver.reports.recv() => {
                        let Some(report) = report else { break LoopExit::Stopped };
                        let seq = report.seq;
                        // An RPC in flight must not delay a stop.
                        let outcome = tokio::select! {
                            biased;
                            _ = &mut stop => None,
                            r = reports.report(report) => Some(r),
                        };
                        match outcome {
                            None => break LoopExit::Stopped,
                            Some(Ok(_)) => observer.observe(broker.id(), &Event::ReportDelivered { seq, local: false }),
                            Some(Err(e)) => tracing::debug!(broker = broker.id(), error = %e, "report to the coo failed"),
                        }
                    }
                }
            };
            puller.abort();
            let _ = puller.await;
            exit
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(broker = broker.id(), error = %e, "no usable coo endpoints");
            let _ = stop.await;
            LoopExit::Stopped
        }
    };
    if !mutants::active("keep_old_receiver") {
        broker.unleash_state_receiver(receiver.registration);
    }
    exit
}

/// Follows the leader coo's stream of topic infos, reopening it when it ends, fails
/// or stays silent past its deadline.
async fn pull_topics(mut client: CooClient, broker: Arc<Broker>, clock: Arc<dyn Clock>) {
    loop {
        if let Ok(mut stream) = client.pull(broker.id()).await {
            loop {
                let next = tokio::select! {
                    biased;
                    m = stream.message() => m,
                    _ = clock.sleep(PULL_IDLE_DEADLINE) => break,
                };
                match next {
                    Ok(Some(infos)) => broker.apply_topic_infos(Arc::new(infos)),
                    _ => break,
                }
            }
        }
        clock.sleep(Duration::from_millis(200)).await;
    }
}
