//! Shared helpers of the server tests: a server on a database of its own, clients that record
//! what they receive, and ops.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use spacesync_client::Client;
use spacesync_protocol::{
    ClientMessage, Format, Operation, RejectCode, Seq, ServerError, ServerMessage,
};
use spacesync_server::{Server, ServerConfig};
use spacesync_store::{PgStore, Store};

/// Every wait in these tests is bounded by this; reaching it fails the test (it is not a
/// timing assertion: the awaited message never came).
pub const PATIENCE: Duration = Duration::from_secs(30);

pub fn op(name: &str, operation_id: &str, body: Value) -> Operation {
    let mut body = body;
    if let Some(object) = body.as_object_mut() {
        object.insert("operationId".into(), json!(operation_id));
    }
    Operation::new(name, body)
}

pub fn card(operation_id: &str, id: &str) -> Operation {
    op(
        "createCard",
        operation_id,
        json!({"id": id, "x": 10, "y": 20, "name": id}),
    )
}

pub fn connection(operation_id: &str, id: &str, start: &str, end: &str) -> Operation {
    op(
        "createConnection",
        operation_id,
        json!({"id": id, "startItemId": start, "endItemId": end}),
    )
}

pub async fn migrated_store(url: &str) -> PgStore {
    let store = PgStore::connect(url, 8).expect("pool");
    store.migrate().await.expect("migrates");
    store
}

pub async fn start(store: Arc<dyn Store>, config: ServerConfig) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    Server::start(config, store, listener).expect("starts")
}

pub fn ws_url(server: &Server) -> String {
    format!("ws://{}/ws", server.local_addr())
}

/// A client that records what it receives for one space.
pub struct Member {
    pub client: Client,
    pub space: String,
    /// Seqs of acks (not duplicates) and broadcasts, in the order received.
    pub seqs: Vec<Seq>,
    pub acks: HashMap<String, (Seq, bool)>,
    pub held: HashSet<String>,
    pub rejected: HashMap<String, (RejectCode, bool, String)>,
    pub broadcasts: Vec<(Seq, Operation)>,
    pub errors: Vec<(ServerError, String)>,
    pub presence: Vec<(String, Value)>,
    pub joined_seq: Option<Seq>,
    pub snapshot: Option<Value>,
    pub joined_ops: Vec<Seq>,
    /// The ops of the last `joined`, as received.
    pub joined_with: Vec<(Seq, Operation)>,
    /// Every `log` answer: the head and the ops of the page.
    pub logs: Vec<(Seq, Vec<(Seq, Operation)>)>,
}

impl Member {
    pub async fn connect(url: &str, format: Format, client_id: &str, space: &str) -> Member {
        let client = Client::connect(url, format, Some(client_id))
            .await
            .expect("connects");
        Member::new(client, space)
    }

    /// Records what `client` receives for `space`.
    pub fn new(client: Client, space: &str) -> Member {
        Member {
            client,
            space: space.to_owned(),
            seqs: Vec::new(),
            acks: HashMap::new(),
            held: HashSet::new(),
            rejected: HashMap::new(),
            broadcasts: Vec::new(),
            errors: Vec::new(),
            presence: Vec::new(),
            joined_seq: None,
            snapshot: None,
            joined_ops: Vec::new(),
            joined_with: Vec::new(),
            logs: Vec::new(),
        }
    }

    /// Connects and joins; returns once `joined` arrived.
    pub async fn join(
        url: &str,
        format: Format,
        client_id: &str,
        space: &str,
        since: Option<Seq>,
    ) -> Member {
        let mut member = Member::connect(url, format, client_id, space).await;
        member.client.join(space, since).await.expect("sends join");
        member.until(|member| member.joined_seq.is_some()).await;
        member
    }

    pub async fn submit(&mut self, ops: Vec<Operation>) {
        let space = self.space.clone();
        self.client.submit(&space, ops).await.expect("submits");
    }

    /// Sends `readLog` for this member's space and waits for its `log` answer: the head and
    /// the page's ops.
    pub async fn read_log(
        &mut self,
        after: Seq,
        limit: Option<u32>,
    ) -> (Seq, Vec<(Seq, Operation)>) {
        let message = ClientMessage::ReadLog {
            space_id: self.space.clone(),
            after,
            limit,
        };
        self.client.send(&message).await.expect("sends readLog");
        let answered = self.logs.len() + 1;
        self.until(|member| member.logs.len() == answered).await;
        self.logs.last().cloned().expect("a log answer")
    }

    /// Reads messages until `done` holds.
    pub async fn until(&mut self, done: impl Fn(&Member) -> bool) {
        let waited = tokio::time::timeout(PATIENCE, async {
            while !done(self) {
                let message = self.client.recv().await.expect("receives");
                self.record(message);
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "timed out; so far: acks {:?}, rejected {:?}, held {:?}, seqs {:?}, errors {:?}",
            self.acks,
            self.rejected,
            self.held,
            self.seqs,
            self.errors
        );
    }

    /// Reads (and records) until the server closes the connection; returns the close code.
    pub async fn close_code(&mut self) -> u16 {
        let closed = tokio::time::timeout(PATIENCE, async {
            loop {
                match self.client.recv().await {
                    Ok(message) => self.record(message),
                    Err(error) => return error,
                }
            }
        })
        .await
        .expect("the server closes the connection");
        match closed {
            spacesync_client::ClientError::Closed { code, .. } => code,
            other => panic!("the connection ended without a close frame: {other:?}"),
        }
    }

    /// Waits for a final answer (ack or rejection) to each op id.
    pub async fn answered(&mut self, ids: &[&str]) {
        let ids: Vec<String> = ids.iter().map(|id| (*id).to_owned()).collect();
        self.until(move |member| {
            ids.iter()
                .all(|id| member.acks.contains_key(id) || member.rejected.contains_key(id))
        })
        .await;
    }

    pub fn record(&mut self, message: ServerMessage) {
        match message {
            ServerMessage::Ack {
                operation_id,
                seq,
                duplicate,
                space_id,
            } => {
                assert_eq!(space_id, self.space);
                if !duplicate {
                    self.seqs.push(seq);
                }
                self.acks.insert(operation_id, (seq, duplicate));
            }
            ServerMessage::Held { operation_id, .. } => {
                self.held.insert(operation_id);
            }
            ServerMessage::Rejected {
                operation_id,
                code,
                permanent,
                message,
                ..
            } => {
                self.rejected
                    .insert(operation_id, (code, permanent, message));
            }
            ServerMessage::Broadcast { seq, op, space_id } => {
                assert_eq!(space_id, self.space);
                self.seqs.push(seq);
                self.broadcasts.push((seq, op));
            }
            ServerMessage::Joined {
                seq, snapshot, ops, ..
            } => {
                self.joined_seq = Some(seq);
                self.snapshot = snapshot;
                self.joined_ops = ops.iter().map(|op| op.seq).collect();
                self.seqs.extend(ops.iter().map(|op| op.seq));
                self.joined_with = ops.into_iter().map(|op| (op.seq, op.op)).collect();
            }
            ServerMessage::Error { code, message } => self.errors.push((code, message)),
            ServerMessage::Presence {
                client_id, data, ..
            } => self.presence.push((client_id, data)),
            ServerMessage::Log {
                space_id,
                head,
                ops,
                ..
            } => {
                assert_eq!(space_id, self.space);
                let ops = ops.into_iter().map(|op| (op.seq, op.op)).collect();
                self.logs.push((head, ops));
            }
            ServerMessage::Welcome { .. } | ServerMessage::Left { .. } => {}
        }
    }

    /// The seqs seen since joining are exactly `from..=to`, in order.
    pub fn assert_gapless(&self, from: Seq, to: Seq) {
        let expected: Vec<Seq> = (from..=to).collect();
        assert_eq!(
            self.seqs,
            expected,
            "seqs seen by {}",
            self.client.client_id()
        );
    }
}

/// The cards, connections, … of a space as a fresh client downloads it.
pub async fn download(url: &str, space: &str) -> (Seq, Value) {
    let member = Member::join(url, Format::Json, "downloader", space, None).await;
    (
        member.joined_seq.unwrap(),
        member
            .snapshot
            .expect("a join without since gets the whole space"),
    )
}

pub fn ids(space: &Value, collection: &str) -> Vec<String> {
    let mut ids: Vec<String> = space[collection]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// The op ids in a space's log, in seq order, straight from the database.
pub async fn logged(url: &str, space: &str) -> Vec<(i64, String)> {
    spacesync_testkit::client(url)
        .await
        .query(
            "SELECT seq, operation_id FROM op_log WHERE space_id = $1 ORDER BY seq",
            &[&space],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

pub async fn quarantined(url: &str, space: &str) -> Vec<(String, String, i32)> {
    spacesync_testkit::client(url)
        .await
        .query(
            "SELECT operation_id, code, attempts FROM quarantine WHERE space_id = $1 ORDER BY operation_id",
            &[&space],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

/// A plain HTTP/1.1 GET; returns the status code and the body.
pub async fn http_get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connects");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("writes");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("reads");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Lets a test hold appends back: `append` reports that it started and waits for the gate.
#[derive(Debug)]
pub struct GatedStore {
    pub inner: spacesync_store::PgStore,
    pub started: tokio::sync::mpsc::UnboundedSender<()>,
    pub gate: tokio::sync::watch::Receiver<bool>,
}

macro_rules! delegate {
    ($($name:ident ( $($arg:ident : $ty:ty),* ) -> $out:ty;)*) => {
        $(fn $name<'a>(&'a self, $($arg: $ty),*) -> spacesync_store::StoreFuture<'a, $out> {
            Store::$name(&self.inner, $($arg),*)
        })*
    };
}

impl Store for GatedStore {
    fn describe(&self) -> String {
        "gated".into()
    }
    fn append<'a>(
        &'a self,
        entries: &'a [spacesync_store::NewLogEntry],
    ) -> spacesync_store::StoreFuture<'a, spacesync_store::AppendOutcome> {
        Box::pin(async move {
            let _ = self.started.send(());
            let mut gate = self.gate.clone();
            let _ = gate.wait_for(|open| *open).await;
            Store::append(&self.inner, entries).await
        })
    }
    delegate! {
        ping() -> ();
        schema_status() -> spacesync_store::SchemaStatus;
        migrate() -> spacesync_store::SchemaStatus;
        doctor() -> spacesync_store::DoctorReport;
        load(space_id: &'a str) -> spacesync_store::LoadedSpace;
        log_after(space_id: &'a str, after: u64, limit: Option<i64>) -> Vec<spacesync_store::LogEntry>;
        write_snapshot(space_id: &'a str, snapshot: &'a spacesync_store::StoredSnapshot) -> ();
        prior(space_id: &'a str, operation_id: &'a str) -> Option<spacesync_store::PriorRecord>;
        logged_seqs(space_id: &'a str, operation_ids: &'a [String]) -> HashMap<String, Seq>;
        quarantine_batch(records: &'a [spacesync_store::NewQuarantine]) -> ();
        quarantine_list(space_id: Option<&'a str>, limit: i64) -> Vec<spacesync_store::QuarantineEntry>;
        quarantine_get(space_id: &'a str, operation_id: &'a str) -> Option<spacesync_store::QuarantineEntry>;
        quarantine_remove(space_id: &'a str, operation_id: &'a str) -> bool;
    }
}

/// A store whose op lookups (`prior`, `logged_seqs`) and log reads fail while their flag is
/// set (a store that cannot be read for a moment); everything else goes to `inner`.
#[derive(Debug)]
pub struct FlakyStore {
    pub inner: spacesync_store::PgStore,
    pub fail_lookups: std::sync::atomic::AtomicBool,
    pub fail_log_after: std::sync::atomic::AtomicBool,
}

impl FlakyStore {
    pub fn new(inner: spacesync_store::PgStore) -> FlakyStore {
        FlakyStore {
            inner,
            fail_lookups: false.into(),
            fail_log_after: false.into(),
        }
    }

    fn check(flag: &std::sync::atomic::AtomicBool) -> Result<(), spacesync_store::StoreError> {
        if flag.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(spacesync_store::StoreError::Config(
                "reads are failing in this test".into(),
            ));
        }
        Ok(())
    }
}

impl Store for FlakyStore {
    fn describe(&self) -> String {
        "flaky".into()
    }
    fn prior<'a>(
        &'a self,
        space_id: &'a str,
        operation_id: &'a str,
    ) -> spacesync_store::StoreFuture<'a, Option<spacesync_store::PriorRecord>> {
        Box::pin(async move {
            FlakyStore::check(&self.fail_lookups)?;
            Store::prior(&self.inner, space_id, operation_id).await
        })
    }
    fn logged_seqs<'a>(
        &'a self,
        space_id: &'a str,
        operation_ids: &'a [String],
    ) -> spacesync_store::StoreFuture<'a, HashMap<String, Seq>> {
        Box::pin(async move {
            FlakyStore::check(&self.fail_lookups)?;
            Store::logged_seqs(&self.inner, space_id, operation_ids).await
        })
    }
    fn log_after<'a>(
        &'a self,
        space_id: &'a str,
        after: u64,
        limit: Option<i64>,
    ) -> spacesync_store::StoreFuture<'a, Vec<spacesync_store::LogEntry>> {
        Box::pin(async move {
            FlakyStore::check(&self.fail_log_after)?;
            Store::log_after(&self.inner, space_id, after, limit).await
        })
    }
    delegate! {
        ping() -> ();
        schema_status() -> spacesync_store::SchemaStatus;
        migrate() -> spacesync_store::SchemaStatus;
        doctor() -> spacesync_store::DoctorReport;
        append(entries: &'a [spacesync_store::NewLogEntry]) -> spacesync_store::AppendOutcome;
        load(space_id: &'a str) -> spacesync_store::LoadedSpace;
        write_snapshot(space_id: &'a str, snapshot: &'a spacesync_store::StoredSnapshot) -> ();
        quarantine_batch(records: &'a [spacesync_store::NewQuarantine]) -> ();
        quarantine_list(space_id: Option<&'a str>, limit: i64) -> Vec<spacesync_store::QuarantineEntry>;
        quarantine_get(space_id: &'a str, operation_id: &'a str) -> Option<spacesync_store::QuarantineEntry>;
        quarantine_remove(space_id: &'a str, operation_id: &'a str) -> bool;
    }
}

/// An HTTP response as the tests see it.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "not JSON ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// A plain HTTP/1.1 request over a fresh connection (`Connection: close`).
pub async fn http(
    address: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connects");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("writes");
    stream.write_all(body).await.expect("writes the body");
    let mut response = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut response))
        .await
        .expect("answers in time")
        .expect("reads");
    let split = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("a complete response");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let mut body = response[split + 4..].to_vec();
    let chunked = headers.iter().any(|(key, value)| {
        key.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        let mut decoded = Vec::new();
        let mut rest = &body[..];
        loop {
            let line_end = rest
                .windows(2)
                .position(|window| window == b"\r\n")
                .expect("chunk size");
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..line_end]).trim(), 16)
                .expect("hex size");
            rest = &rest[line_end + 2..];
            if size == 0 {
                break;
            }
            decoded.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        body = decoded;
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// `POST /operations` with a JSON body.
pub async fn post_operations(address: std::net::SocketAddr, ops: Value) -> HttpResponse {
    let body = serde_json::to_vec(&ops).expect("encodes");
    http(
        address,
        "POST",
        "/operations",
        &[("Content-Type", "application/json")],
        &body,
    )
    .await
}
