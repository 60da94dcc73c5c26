//! Group commit: actors hand their batches to the committer, which writes everything that
//! queued up meanwhile (from any number of spaces) in one transaction. Each actor has at most
//! one batch in flight, so a space's rows are always committed in seq order. Transient store
//! errors are retried with backoff and jitter until they pass; nothing is acknowledged
//! meanwhile. A poison row fails only the batch of its own space; the others are written again
//! without it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use spacesync_store::{NewLogEntry, Poison, Store};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::metrics::Metrics;

/// What became of one actor's batch.
#[derive(Debug)]
pub enum CommitResult {
    /// Every row is durable.
    Committed,
    /// The first `poison.index` rows are durable; the row at that index was refused and the
    /// rows after it were not written.
    Poison(Poison),
}

struct Request {
    entries: Vec<NewLogEntry>,
    reply: oneshot::Sender<CommitResult>,
}

/// The handle actors commit through.
#[derive(Debug, Clone)]
pub struct Committer {
    tx: mpsc::Sender<Request>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Request")
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl Committer {
    /// Starts the committer on a thread and runtime of its own, with database connections of
    /// its own (when the store can open them).
    ///
    /// On the server's runtime a commit took four or five task hops (the committer, its write
    /// task, the database connection's task, both ways), each queued behind hundreds of
    /// connection and actor tasks: at half of peak, actors waited ~14 ms at p99 for commits
    /// that took ~4 ms. Here those hops wait for nothing but the commits.
    pub fn start(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        max_rows: usize,
        concurrency: usize,
    ) -> Committer {
        let (tx, rx) = mpsc::channel(16_384);
        let concurrency = concurrency.max(1);
        let writer = store.writer(concurrency).unwrap_or(store);
        let task = run(writer, metrics.clone(), rx, max_rows.max(1), concurrency);
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => {
                let spawned = std::thread::Builder::new()
                    .name("spacesync-committer".to_owned())
                    .spawn(move || runtime.block_on(task));
                if let Err(error) = spawned {
                    // Commits then fail ("the committer stopped") instead of waiting forever.
                    tracing::error!(%error, "cannot start the committer's thread");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot build the committer's runtime; it shares the server's");
                tokio::spawn(task);
            }
        }
        Committer { tx, metrics }
    }

    /// Commits a batch of one space and waits for the outcome.
    pub async fn commit(&self, entries: Vec<NewLogEntry>) -> Option<CommitResult> {
        if entries.is_empty() {
            return Some(CommitResult::Committed);
        }
        let started = Instant::now();
        let (reply, result) = oneshot::channel();
        self.tx.send(Request { entries, reply }).await.ok()?;
        let result = result.await.ok();
        self.metrics
            .commit_wait_seconds
            .observe(started.elapsed().as_secs_f64());
        result
    }
}

async fn run(
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    mut rx: mpsc::Receiver<Request>,
    max_rows: usize,
    concurrency: usize,
) {
    let slots = Arc::new(Semaphore::new(concurrency));
    loop {
        // Wait for a free slot first: requests keep queueing (and batching) meanwhile.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            drop(permit);
            break;
        };
        let mut rows = first.entries.len();
        let mut batch = vec![first];
        while rows < max_rows {
            match rx.try_recv() {
                Ok(request) => {
                    rows += request.entries.len();
                    batch.push(request);
                }
                Err(_) => break,
            }
        }
        let store = store.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            write(&*store, &metrics, batch).await;
            drop(permit);
        });
    }
    // Every sender is gone: let the writes in flight finish before the runtime stops.
    let _ = slots
        .acquire_many(u32::try_from(concurrency).unwrap_or(u32::MAX))
        .await;
}

/// Writes requests until each has its answer. The rows are moved into one batch, not copied;
/// after a refused row, the requests behind it are written again from the same batch.
async fn write(store: &dyn Store, metrics: &Metrics, batch: Vec<Request>) {
    let mut entries = Vec::with_capacity(batch.iter().map(|request| request.entries.len()).sum());
    let mut waiting = Vec::with_capacity(batch.len());
    for request in batch {
        let rows = request.entries.len();
        entries.extend(request.entries);
        waiting.push((rows, request.reply));
    }
    let mut offset = 0;
    while !waiting.is_empty() {
        let outcome = append_retrying(store, metrics, &entries[offset..]).await;
        let Some(poison) = outcome.poison else {
            for (_, reply) in waiting {
                let _ = reply.send(CommitResult::Committed);
            }
            return;
        };
        // Requests wholly before the refused row committed; the one holding it is answered
        // with its own index; those after it were not written and go again.
        let index = poison.index;
        let mut poison = Some(poison);
        let mut start = 0;
        let mut rest = Vec::new();
        let mut rest_offset = None;
        for (rows, reply) in waiting {
            let end = start + rows;
            if end <= index {
                let _ = reply.send(CommitResult::Committed);
            } else if start <= index {
                if let Some(mut poison) = poison.take() {
                    poison.index = index - start;
                    let _ = reply.send(CommitResult::Poison(poison));
                }
            } else {
                rest_offset.get_or_insert(start);
                rest.push((rows, reply));
            }
            start = end;
        }
        offset += rest_offset.unwrap_or(start);
        waiting = rest;
    }
}

async fn append_retrying(
    store: &dyn Store,
    metrics: &Metrics,
    entries: &[NewLogEntry],
) -> spacesync_store::AppendOutcome {
    let mut attempt: u32 = 0;
    loop {
        let started = Instant::now();
        match store.append(entries).await {
            Ok(outcome) => {
                metrics
                    .commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                metrics.commit_rows.observe(entries.len() as f64);
                return outcome;
            }
            Err(error) => {
                // Permanent errors of a whole batch (not of one row) are retried too: acks
                // wait rather than lose an op. They show in the log and the retry metric.
                attempt = attempt.saturating_add(1);
                metrics.commit_retries.inc();
                let delay = backoff(attempt);
                if attempt == 1 || attempt.is_multiple_of(20) {
                    tracing::warn!(%error, attempt, rows = entries.len(), ?delay, "commit failed; retrying");
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Exponential backoff from 20 ms to 2 s with full jitter on the upper half.
pub fn backoff(attempt: u32) -> Duration {
    let base_ms = 20u64.saturating_mul(1 << attempt.min(7)).min(2_000);
    let jitter = rand::rng().random_range(0..=base_ms / 2);
    Duration::from_millis(base_ms / 2 + jitter)
}
