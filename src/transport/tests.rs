//! The stream transport in real mode: real tonic/HTTP2 on 127.0.0.1, fake nodes
//! (a RaftHandle whose inbox the test reads). The wire format is exercised here:
//! the simulation passes messages as in-memory values.

use std::net::SocketAddr;
use std::slice;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raft::eraftpb::{Message, MessageType};
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status, Streaming};

use super::peer::{run_peer_sender, PeerLink, StreamTiming};
use super::server::{AckStream, ReceiveError, StreamReceiver};
use super::{GrpcTransport, RaftTransportService};
use crate::proto::raft_transport_server::{RaftTransport, RaftTransportServer};
use crate::proto::{RaftMessageAck, RaftMessageBatch};
use crate::raft::{Input, LeaderInfo, RaftHandle};
use crate::seams::clock::MonotonicClock;
use crate::seams::transport::Transport;
use crate::sync::watch;

const SENDER: u64 = 1;
const RECEIVER: u64 = 2;
/// Long enough for anything these tests wait for; never reached when they pass.
const PATIENCE: Duration = Duration::from_secs(20);

/// A node that is only an inbox.
fn fake_node(capacity: usize) -> (RaftHandle, mpsc::Receiver<Input>) {
    let (tx, rx) = mpsc::channel(capacity);
    let (_leader_tx, leader_rx) = watch::channel(LeaderInfo::default());
    (RaftHandle::new(tx, leader_rx), rx)
}

/// Records the addresses a receiver learns.
#[derive(Default)]
struct LearningTransport {
    learned: Mutex<Vec<(u64, String)>>,
}

impl Transport for LearningTransport {
    fn send_raft_messages(&self, _: Vec<Message>) {}
    fn set_peer(&self, _: u64, _: &str) {}
    fn learn_peer(&self, id: u64, addr: &str) {
        self.learned.lock().unwrap().push((id, addr.to_string()));
    }
    fn remove_peer(&self, _: u64) {}
}

fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A server at `addr`: firing (or dropping) `stop` shuts it down gracefully, and
/// `served` ends once it has.
struct Server {
    stop: oneshot::Sender<()>,
    served: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

fn serve<S: RaftTransport>(addr: SocketAddr, service: S) -> Server {
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(RaftTransportServer::new(service))
            .serve_with_shutdown(addr, async move {
                let _ = stopped.await;
            }),
    );
    Server { stop, served }
}

/// A real receiver for node 2; its inbox and what it learned.
struct Receiver {
    inbox: mpsc::Receiver<Input>,
    learned: Arc<LearningTransport>,
    closing: watch::Sender<bool>,
    server: Server,
}

fn start_receiver(addr: SocketAddr, inbox_capacity: usize) -> Receiver {
    start_receiver_for(RECEIVER, addr, inbox_capacity)
}

fn start_receiver_for(id: u64, addr: SocketAddr, inbox_capacity: usize) -> Receiver {
    let (node, inbox) = fake_node(inbox_capacity);
    let learned = Arc::new(LearningTransport::default());
    let (closing, closing_rx) = watch::channel(false);
    let service = RaftTransportService::new(id, node, learned.clone(), closing_rx);
    Receiver {
        inbox,
        learned,
        closing,
        server: serve(addr, service),
    }
}

fn fast_timing() -> StreamTiming {
    StreamTiming {
        open_deadline: Duration::from_millis(500),
        ack_tick: Duration::from_millis(100),
        snapshot_ack_ticks: 3,
        window: 8,
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
    }
}

/// Node 1's sender to node 2 at `addr`; node 1's inbox gets its reports.
fn start_sender(addr: SocketAddr) -> (mpsc::Sender<Message>, mpsc::Receiver<Input>) {
    let (node, reports) = fake_node(1024);
    let link = PeerLink {
        from: SENDER,
        from_addr: "127.0.0.1:1".to_string(),
        to: RECEIVER,
        addr: addr.to_string(),
        node,
        clock: Arc::new(MonotonicClock::new()),
        timing: fast_timing(),
    };
    let (queue, rx) = mpsc::channel(4096);
    tokio::spawn(run_peer_sender(link, rx));
    (queue, reports)
}

fn message(kind: MessageType, commit: u64) -> Message {
    message_to(RECEIVER, kind, commit)
}

/// Queues one message for the receiver.
async fn send(queue: &mpsc::Sender<Message>, kind: MessageType, commit: u64) {
    queue.send(message(kind, commit)).await.unwrap();
}

/// Queues `count` appends for the receiver, numbered by their commit field.
async fn queue_appends(queue: &mpsc::Sender<Message>, count: u64) {
    for commit in 0..count {
        send(queue, MessageType::MsgAppend, commit).await;
    }
}

fn message_to(to: u64, kind: MessageType, commit: u64) -> Message {
    let mut m = Message::default();
    m.set_msg_type(kind);
    m.from = SENDER;
    m.to = to;
    m.commit = commit;
    m
}

/// The next input that `pick` accepts, skipping others.
async fn next_matching<T>(
    inbox: &mut mpsc::Receiver<Input>,
    mut pick: impl FnMut(Input) -> Option<T>,
) -> T {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let input = inbox.recv().await.expect("inbox open");
            if let Some(found) = pick(input) {
                return found;
            }
        }
    })
    .await
    .expect("the expected input did not come")
}

async fn next_snapshot_report(reports: &mut mpsc::Receiver<Input>) -> bool {
    next_matching(reports, |input| match input {
        Input::SnapshotSent { peer, ok } => {
            assert_eq!(peer, RECEIVER);
            Some(ok)
        }
        _ => None,
    })
    .await
}

async fn next_unreachable(reports: &mut mpsc::Receiver<Input>) {
    next_matching(reports, |input| match input {
        Input::PeerUnreachable { peer } => {
            assert_eq!(peer, RECEIVER);
            Some(())
        }
        _ => None,
    })
    .await
}

/// Received messages' commit fields, until `count` of them arrived.
async fn received_commits(inbox: &mut mpsc::Receiver<Input>, count: usize) -> Vec<u64> {
    let mut commits = Vec::new();
    while commits.len() < count {
        let batch = next_matching(inbox, |input| match input {
            Input::RaftMessages(messages) => Some(messages),
            _ => None,
        })
        .await;
        commits.extend(batch.iter().map(|m| m.commit));
    }
    commits
}

#[tokio::test]
async fn pipelined_batches_arrive_in_order_and_the_receiver_learns_the_sender() {
    let addr = free_addr();
    let mut receiver = start_receiver(addr, 8192);
    let (queue, mut reports) = start_sender(addr);
    // More messages than one batch and one window hold; several writes in flight.
    queue_appends(&queue, 5000).await;
    let commits = received_commits(&mut receiver.inbox, 5000).await;
    assert_eq!(commits, (0..5000).collect::<Vec<_>>());
    assert_eq!(
        *receiver.learned.learned.lock().unwrap(),
        vec![(SENDER, "127.0.0.1:1".to_string())],
        "learned once, from the stream's first batch"
    );
    let failure = reports.try_recv();
    assert!(failure.is_err(), "nothing failed: {failure:?}");
}

#[tokio::test]
async fn what_was_queued_for_a_peer_before_its_removal_still_reaches_it() {
    let addr = free_addr();
    let mut receiver = start_receiver(addr, 8192);
    let (queue, mut reports) = start_sender(addr);
    // A leader's last messages to a node it removes tell that node it was removed.
    queue_appends(&queue, 2000).await;
    drop(queue);
    assert_eq!(
        received_commits(&mut receiver.inbox, 2000).await,
        (0..2000).collect::<Vec<_>>()
    );
    let failure = reports.try_recv();
    assert!(failure.is_err(), "nothing failed: {failure:?}");
}

#[tokio::test]
async fn a_dead_peer_does_not_delay_messages_to_another() {
    const LIVE: u64 = 3;
    // The kernel accepts connections here, and nobody ever answers on them: the
    // dead peer's stream cannot open before its deadline (1 s by default).
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let live_addr = free_addr();
    let mut live = start_receiver_for(LIVE, live_addr, 8192);
    let (node, mut reports) = fake_node(8192);
    let transport = GrpcTransport::new(
        SENDER,
        "127.0.0.1:1".to_string(),
        node,
        Arc::new(MonotonicClock::new()),
    );
    transport.set_peer(RECEIVER, &dead.local_addr().unwrap().to_string());
    transport.set_peer(LIVE, &live_addr.to_string());
    for commit in 0..1000 {
        transport.send_raft_messages(vec![
            message_to(RECEIVER, MessageType::MsgAppend, commit),
            message_to(LIVE, MessageType::MsgAppend, commit),
        ]);
    }
    assert_eq!(
        received_commits(&mut live.inbox, 1000).await,
        (0..1000).collect::<Vec<_>>()
    );
    // Had the dead peer's sender held up the live one's, nothing would have reached
    // the live peer before the dead one's first stream failed and was reported.
    while let Ok(report) = reports.try_recv() {
        assert!(
            !matches!(report, Input::PeerUnreachable { .. }),
            "delivered only after a failure: {report:?}"
        );
    }
}

/// Accepts streams and reads them, but never answers (a peer whose answers a
/// partition swallows while the connection stays up).
struct SilentReceiver {
    opened: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl RaftTransport for SilentReceiver {
    type StreamRaftMessagesStream = AckStream;

    async fn stream_raft_messages(
        &self,
        request: Request<Streaming<RaftMessageBatch>>,
    ) -> Result<Response<AckStream>, Status> {
        self.opened.fetch_add(1, Ordering::SeqCst);
        let inbound = request.into_inner();
        let silent = futures::stream::unfold(inbound, |mut inbound| async move {
            while let Ok(Some(_)) = inbound.message().await {}
            None::<(Result<RaftMessageAck, Status>, _)>
        });
        Ok(Response::new(Box::pin(silent)))
    }
}

#[tokio::test]
async fn a_silent_receiver_is_found_dead_and_the_sender_reconnects() {
    let addr = free_addr();
    let opened = Arc::new(AtomicUsize::new(0));
    let _server = serve(
        addr,
        SilentReceiver {
            opened: opened.clone(),
        },
    );
    let (queue, mut reports) = start_sender(addr);
    send(&queue, MessageType::MsgSnapshot, 0).await;
    next_unreachable(&mut reports).await;
    assert!(
        !next_snapshot_report(&mut reports).await,
        "a snapshot written into a stream nobody acknowledges was not sent"
    );
    // The sender reconnects (after its backoff) once it has something to send.
    tokio::time::timeout(PATIENCE, async {
        while opened.load(Ordering::SeqCst) < 2 {
            let _ = queue.try_send(message(MessageType::MsgHeartbeat, 0));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the sender opened a new stream");
}

#[tokio::test]
async fn a_snapshot_the_receiving_node_could_not_take_is_reported_not_sent() {
    let addr = free_addr();
    let mut receiver = start_receiver(addr, 1);
    let (queue, mut reports) = start_sender(addr);
    send(&queue, MessageType::MsgAppend, 1).await;
    assert_eq!(received_commits(&mut receiver.inbox, 1).await, vec![1]);
    // Fill the receiving node's inbox (capacity 1): an append nobody reads yet.
    send(&queue, MessageType::MsgAppend, 2).await;
    tokio::time::timeout(PATIENCE, async {
        while receiver.inbox.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the append arrived");
    send(&queue, MessageType::MsgSnapshot, 3).await;
    next_unreachable(&mut reports).await;
    assert!(!next_snapshot_report(&mut reports).await, "rejected");
    // Room again: the next snapshot is accepted, and the stream was kept.
    assert_eq!(received_commits(&mut receiver.inbox, 1).await, vec![2]);
    send(&queue, MessageType::MsgSnapshot, 4).await;
    assert!(next_snapshot_report(&mut reports).await, "accepted");
    assert_eq!(received_commits(&mut receiver.inbox, 1).await, vec![4]);
}

#[tokio::test]
async fn a_receiver_that_goes_away_is_reported_and_reconnected_to_when_back() {
    let addr = free_addr();
    let mut receiver = start_receiver(addr, 1024);
    let (queue, mut reports) = start_sender(addr);
    send(&queue, MessageType::MsgAppend, 1).await;
    assert_eq!(received_commits(&mut receiver.inbox, 1).await, vec![1]);
    // Closing ends the open streams, so the graceful shutdown does not wait for
    // peers' streams forever.
    receiver.closing.send(true).unwrap();
    let _ = receiver.server.stop.send(());
    tokio::time::timeout(PATIENCE, receiver.server.served)
        .await
        .expect("the server shut down with a peer's stream open")
        .unwrap()
        .unwrap();
    next_unreachable(&mut reports).await;
    let mut back = start_receiver(addr, 1024);
    tokio::time::timeout(PATIENCE, async {
        let mut commit = 2;
        loop {
            let _ = queue.try_send(message(MessageType::MsgAppend, commit));
            commit += 1;
            tokio::select! {
                biased;
                Some(Input::RaftMessages(_)) = back.inbox.recv() => break,
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    })
    .await
    .expect("messages reach the receiver again");
}

fn batch(seq: u64, messages: &[Message]) -> RaftMessageBatch {
    use protobuf::Message as _;
    RaftMessageBatch {
        from: SENDER,
        to: RECEIVER,
        from_addr: String::new(),
        seq,
        ack_requested: false,
        messages: messages
            .iter()
            .map(|m| m.write_to_bytes().unwrap())
            .collect(),
    }
}

#[test]
fn the_receiver_refuses_bad_batches_with_typed_errors() {
    let (node, _inbox) = fake_node(16);
    let mut receiver = StreamReceiver::new(RECEIVER, node, Arc::new(LearningTransport::default()));
    let good = message(MessageType::MsgHeartbeat, 0);
    assert_eq!(
        receiver.receive_batch(batch(1, slice::from_ref(&good))),
        Ok(None)
    );

    let mut wrong_node = batch(2, slice::from_ref(&good));
    wrong_node.to = 3;
    assert!(matches!(
        receiver.receive_batch(wrong_node),
        Err(ReceiveError::WrongNode {
            to: 3,
            at: RECEIVER,
            ..
        })
    ));
    let mut other_sender = batch(2, slice::from_ref(&good));
    other_sender.from = 3;
    assert!(matches!(
        receiver.receive_batch(other_sender),
        Err(ReceiveError::WrongSender {
            from: 3,
            stream_from: SENDER,
            ..
        })
    ));
    assert!(matches!(
        receiver.receive_batch(batch(3, slice::from_ref(&good))),
        Err(ReceiveError::OutOfOrder {
            seq: 3,
            last: 1,
            ..
        })
    ));
    let mut garbage = batch(2, &[]);
    garbage.messages.push(vec![0xff, 0xff, 0xff]);
    assert!(matches!(
        receiver.receive_batch(garbage),
        Err(ReceiveError::Decode { index: 0, .. })
    ));
    let mut elsewhere = good.clone();
    elsewhere.to = 3;
    assert!(matches!(
        receiver.receive_batch(batch(2, &[good.clone(), elsewhere])),
        Err(ReceiveError::Misaddressed {
            index: 1,
            to: 3,
            ..
        })
    ));
    let status = Status::from(ReceiveError::WrongNode {
        seq: 1,
        to: 3,
        at: RECEIVER,
    });
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
}

#[test]
fn the_receiver_answers_requested_batches_and_rejects_what_the_node_cannot_take() {
    let (node, mut inbox) = fake_node(1);
    let mut receiver = StreamReceiver::new(RECEIVER, node, Arc::new(LearningTransport::default()));
    let good = message(MessageType::MsgHeartbeat, 0);
    let mut asked = batch(1, slice::from_ref(&good));
    asked.ack_requested = true;
    let ack = receiver.receive_batch(asked).unwrap().expect("asked");
    assert_eq!((ack.seq, ack.accepted), (1, true));
    // The inbox (capacity 1) now holds batch 1: batch 2 does not fit.
    let ack = receiver
        .receive_batch(batch(2, slice::from_ref(&good)))
        .unwrap()
        .expect("a rejection is always answered");
    assert_eq!((ack.seq, ack.accepted), (2, false));
    assert!(!ack.reason.is_empty());
    assert!(inbox.try_recv().is_ok());
    assert_eq!(receiver.receive_batch(batch(3, &[good])), Ok(None));
    drop(inbox);
    assert!(matches!(
        receiver.receive_batch(batch(4, &[])),
        Err(ReceiveError::NodeStopped { .. })
    ));
}
