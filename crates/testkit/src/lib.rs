//! Test support shared by the crates' integration tests.
//!
//! - [`TestDatabase`]: a database of its own on the shared PostgreSQL server
//!   (`SPACESYNC_TEST_DATABASE_URL`, default the local server on 127.0.0.1:5432), created for
//!   one test and dropped afterwards, also when the test panics.
//! - [`Cluster`]: a private, throwaway PostgreSQL cluster (`initdb` + `pg_ctl` on a temporary
//!   directory and a free port) for tests that stop, restart or cut the database. They never
//!   touch the shared server, which other tests use in parallel.
//!
//! Without PostgreSQL the tests that need it print `SKIPPED …` with how to enable them; with
//! `CI=true` a missing PostgreSQL fails them instead.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const DEFAULT_ADMIN_URL: &str = "host=127.0.0.1 port=5432 user=postgres dbname=postgres";
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Whether a missing prerequisite must fail the test (in CI) rather than skip it.
pub fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Skips (outside CI) or fails (in CI) a test whose prerequisite is missing.
fn missing(test: &str, what: &str) {
    assert!(!in_ci(), "CI=true but {what}");
    eprintln!(
        "SKIPPED {test}: {what}. Start PostgreSQL 15 (or set SPACESYNC_TEST_DATABASE_URL) to run it."
    );
}

/// The shared server's admin URL.
pub fn admin_url() -> String {
    std::env::var("SPACESYNC_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// A database of its own for one test, dropped when the value is.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates `spacesync_test_<pid>_<test>` (dropping a leftover of the same name first).
    /// `None` when PostgreSQL is unreachable outside CI (the test then returns early).
    pub async fn create(test: &str) -> Option<TestDatabase> {
        let admin = admin_url();
        let (client, connection) =
            match tokio_postgres::connect(&admin, tokio_postgres::NoTls).await {
                Ok(pair) => pair,
                Err(error) => {
                    missing(
                        test,
                        &format!("PostgreSQL is not reachable at {admin}: {error}"),
                    );
                    return None;
                }
            };
        tokio::spawn(connection);
        let name = format!("spacesync_test_{}_{}", std::process::id(), test);
        // Two statements, not one batch: DROP/CREATE DATABASE refuse to run in a transaction.
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .expect("drops a leftover test database");
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("creates the test database");
        let config: tokio_postgres::Config = admin.parse().expect("admin URL parses");
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            _ => "127.0.0.1".to_owned(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config.get_user().unwrap_or("postgres");
        let url = format!("host={host} port={port} user={user} dbname={name}");
        Some(TestDatabase { name, url })
    }

    /// A key=value URL of the database.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside the test's runtime; clean up on a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async move {
                    if let Ok((client, connection)) =
                        tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls).await
                    {
                        tokio::spawn(connection);
                        let _ = client
                            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .await;
                    }
                });
            }
        })
        .join();
    }
}

/// Runs a query on a database and returns the first column of the first row as i64.
pub async fn query_i64(url: &str, sql: &str) -> i64 {
    client(url)
        .await
        .query_one(sql, &[])
        .await
        .expect("queries")
        .get(0)
}

/// A plain connection to a database (its driver task runs on the current runtime).
pub async fn client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(connection);
    client
}

/// Runs statements on a database.
pub async fn execute(url: &str, sql: &str) {
    client(url)
        .await
        .batch_execute(sql)
        .await
        .expect("executes");
}

/// A private PostgreSQL cluster in a temporary directory, stopped and removed on drop.
#[derive(Debug)]
pub struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
}

impl Cluster {
    /// Initialises and starts a cluster. `None` (outside CI) when PostgreSQL's binaries are
    /// not installed.
    pub fn start(test: &str) -> Option<Cluster> {
        if !Path::new(PG_BIN).join("initdb").exists() {
            missing(
                test,
                &format!("PostgreSQL binaries are not installed in {PG_BIN}"),
            );
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("spacesync-cluster-")
            .tempdir()
            .expect("temporary directory");
        // initdb refuses to run as root: run the cluster as the postgres user then.
        let as_postgres = is_root();
        if as_postgres {
            run(Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path()));
        }
        let port = free_port();
        let cluster = Cluster {
            dir,
            port,
            as_postgres,
        };
        run(&mut cluster.pg(
            "initdb",
            &[
                "-D",
                &cluster.data().display().to_string(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        ));
        cluster.start_server();
        Some(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg(&self, program: &str, args: &[&str]) -> Command {
        let path = Path::new(PG_BIN).join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path).args(args);
            command
        } else {
            let mut command = Command::new(path);
            command.args(args);
            command
        }
    }

    /// A key=value URL of the cluster's `postgres` database.
    pub fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=2",
            self.port
        )
    }

    /// Starts the server (after [`Cluster::stop`]) and waits until it accepts connections.
    pub fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        run(&mut self.pg(
            "pg_ctl",
            &[
                "-D",
                &self.data().display().to_string(),
                "-o",
                &options,
                "-l",
                &self.dir.path().join("log").display().to_string(),
                "-w",
                "start",
            ],
        ));
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ready = self
                .pg(
                    "pg_isready",
                    &["-h", "127.0.0.1", "-p", &self.port.to_string()],
                )
                .output()
                .is_ok_and(|output| output.status.success());
            if ready {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the throwaway cluster did not become ready");
    }

    /// Stops the server (fast shutdown: connections are cut, nothing committed is lost).
    pub fn stop(&self) {
        run(&mut self.pg(
            "pg_ctl",
            &[
                "-D",
                &self.data().display().to_string(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        ));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .pg(
                "pg_ctl",
                &[
                    "-D",
                    &self.data().display().to_string(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
            )
            .output();
    }
}

fn run(command: &mut Command) {
    let output = command.output().expect("runs a PostgreSQL tool");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// A `spacesync serve` child process and the address it announced on stderr.
#[derive(Debug)]
pub struct ServerProcess {
    pub child: std::process::Child,
    pub address: std::net::SocketAddr,
    /// The `store: …` line of the banner (which store, where its data lives).
    pub store_line: String,
}

impl ServerProcess {
    /// Spawns `command` (a `spacesync serve …` with `--listen 127.0.0.1:0`) and waits for its
    /// banner. Its stderr keeps being drained so the server never blocks on a full pipe.
    pub fn spawn(mut command: Command) -> ServerProcess {
        use std::io::{BufRead, BufReader};
        let mut child = command
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("starts spacesync serve");
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut lines = BufReader::new(stderr).lines();
        let mut next = || {
            lines
                .next()
                .expect("serve printed its banner before ending")
                .expect("reads stderr")
        };
        let address = loop {
            let line = next();
            if let Some(rest) = line.split("serving on ws://").nth(1) {
                let address = rest.split('/').next().unwrap_or_default();
                break address.parse().expect("an address in the banner");
            }
        };
        let store_line = next();
        std::thread::spawn(move || for _ in lines {});
        ServerProcess {
            child,
            address,
            store_line,
        }
    }

    /// SIGTERM, then the exit code (-1 when a signal ended it).
    pub fn terminate(mut self) -> i32 {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        self.child.wait().expect("waits").code().unwrap_or(-1)
    }
}

/// The six real Kinopio spaces in `../shared/kinopio-spaces/` beside the checkout, as
/// `(path, JSON)`, or `None` with a printed reason when the folder is absent (outside CI; in CI
/// a missing folder fails the test).
pub fn samples() -> Option<Vec<(String, serde_json::Value)>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/kinopio-spaces");
    if !dir.is_dir() {
        assert!(
            !in_ci(),
            "CI=true but the sample spaces are missing at {}",
            dir.display()
        );
        eprintln!(
            "SKIPPED: the real Kinopio spaces are not at {} (clone beside ../shared to run these)",
            dir.display()
        );
        return None;
    }
    let files = [
        "default-space.json",
        "hello.json",
        "inbox.json",
        "new.json",
        "legacy-8d6c04313/hello.json",
        "legacy-d35e625ff/hello.json",
    ];
    Some(
        files
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(dir.join(path)).expect("sample is readable");
                let json = serde_json::from_str(&text).expect("sample is JSON");
                ((*path).to_owned(), json)
            })
            .collect(),
    )
}
