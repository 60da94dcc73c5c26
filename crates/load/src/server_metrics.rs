//! The server's own view of ack latency over the measured window: the `spacesync_ack_seconds`
//! histogram (arrival at the server → ack) scraped from `/metrics` at the start and the end of
//! the window. Next to the harness's latencies (which also count the harness's own scheduling
//! and the network), it shows where the time goes. A server without that endpoint (another
//! implementation, a proxy in front) just leaves the figures out.

use std::time::Duration;

use spacesync_client::tungstenite::http::Uri;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const METRIC: &str = "spacesync_ack_seconds_bucket{le=\"";
const PATIENCE: Duration = Duration::from_secs(2);

/// Cumulative bucket counts by upper bound in seconds (`+Inf` last), as Prometheus renders them.
pub type Buckets = Vec<(f64, u64)>;

/// Reads the ack-latency histogram of the server behind a WebSocket URL (its `/metrics` is on
/// the same host and port).
pub async fn scrape(ws_url: &str) -> Option<Buckets> {
    let uri: Uri = ws_url.parse().ok()?;
    let authority = uri.authority()?.as_str().to_owned();
    let fetch = async {
        let mut stream = TcpStream::connect(&authority).await.ok()?;
        let request =
            format!("GET /metrics HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        Some(response)
    };
    let response = tokio::time::timeout(PATIENCE, fetch).await.ok()??;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    parse(body)
}

/// The ack-latency buckets in a Prometheus text page, if it has them.
pub fn parse(page: &str) -> Option<Buckets> {
    let buckets: Buckets = page
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(METRIC)?;
            let (bound, count) = rest.split_once("\"} ")?;
            let bound = if bound == "+Inf" {
                f64::INFINITY
            } else {
                bound.parse().ok()?
            };
            Some((bound, count.trim().parse().ok()?))
        })
        .collect();
    (!buckets.is_empty()).then_some(buckets)
}

/// The `quantile` (0..=1) of the acks counted between two scrapes, in milliseconds, by linear
/// interpolation inside the bucket it falls in (as PromQL's `histogram_quantile`). `None` when
/// nothing was acked in between or the scrapes do not line up.
pub fn quantile_ms(before: &Buckets, after: &Buckets, quantile: f64) -> Option<f64> {
    if before.len() != after.len() {
        return None;
    }
    let window: Vec<(f64, u64)> = before
        .iter()
        .zip(after)
        .map(|(&(bound, then), &(same_bound, now))| {
            (bound == same_bound).then(|| (bound, now.saturating_sub(then)))
        })
        .collect::<Option<_>>()?;
    let total = window.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = quantile.clamp(0.0, 1.0) * total as f64;
    let mut lower = (0.0, 0);
    for &(bound, count) in &window {
        if count as f64 >= rank {
            if bound.is_infinite() {
                return Some(lower.0 * 1000.0);
            }
            let in_bucket = (count - lower.1) as f64;
            let fraction = if in_bucket > 0.0 {
                (rank - lower.1 as f64) / in_bucket
            } else {
                1.0
            };
            return Some((lower.0 + (bound - lower.0) * fraction) * 1000.0);
        }
        lower = (bound, count);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "# HELP spacesync_ack_seconds Time from arrival to ack.\n\
        # TYPE spacesync_ack_seconds histogram\n\
        spacesync_ack_seconds_sum 1.5\n\
        spacesync_ack_seconds_count 100\n\
        spacesync_ack_seconds_bucket{le=\"0.001\"} 10\n\
        spacesync_ack_seconds_bucket{le=\"0.002\"} 60\n\
        spacesync_ack_seconds_bucket{le=\"0.004\"} 100\n\
        spacesync_ack_seconds_bucket{le=\"+Inf\"} 100\n\
        spacesync_commit_seconds_bucket{le=\"0.001\"} 3\n";

    #[test]
    fn reads_only_the_ack_histogram() {
        let buckets = parse(PAGE).expect("buckets");
        assert_eq!(
            buckets,
            vec![(0.001, 10), (0.002, 60), (0.004, 100), (f64::INFINITY, 100)]
        );
        assert_eq!(parse("spacesync_commit_seconds_count 3\n"), None);
    }

    #[test]
    fn quantiles_interpolate_inside_the_window() {
        let before = vec![(0.001, 5), (0.002, 5), (0.004, 5), (f64::INFINITY, 5)];
        let after = parse(PAGE).expect("buckets");
        // 95 acks in the window: 5 under 1 ms, 50 in 1–2 ms, 40 in 2–4 ms.
        let p50 = quantile_ms(&before, &after, 0.5).expect("p50");
        assert!((p50 - (1.0 + 42.5 / 50.0)).abs() < 1e-9, "{p50}");
        let p99 = quantile_ms(&before, &after, 0.99).expect("p99");
        assert!(
            (p99 - (2.0 + 2.0 * (94.05 - 55.0) / 40.0)).abs() < 1e-9,
            "{p99}"
        );
        assert_eq!(quantile_ms(&after, &after, 0.5), None, "no acks in between");
    }

    #[test]
    fn a_quantile_beyond_the_last_bound_reports_that_bound() {
        let before = vec![(0.001, 0), (f64::INFINITY, 0)];
        let after = vec![(0.001, 1), (f64::INFINITY, 10)];
        assert_eq!(quantile_ms(&before, &after, 0.99), Some(1.0));
    }

    #[test]
    fn mismatched_scrapes_give_nothing() {
        let before = vec![(0.001, 0), (f64::INFINITY, 0)];
        let after = vec![(0.002, 1), (f64::INFINITY, 1)];
        assert_eq!(quantile_ms(&before, &after, 0.5), None);
        assert_eq!(quantile_ms(&before, &after[..1].to_vec(), 0.5), None);
    }
}
