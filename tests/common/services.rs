//! Real coordinator and worker processes for end-to-end tests, with extra flags per kind of
//! process (TLS files, credentials), so one harness runs a cluster plain, with TLS or with mutual
//! TLS: [`Cluster::start_with`] takes a [`Flags`] and every client command gets the client flags.
//! [`Cluster::secured`] adds the credentials (a cluster secret, client tokens) over plain TCP or
//! mutual TLS ([`Wire`]), so one attack test runs in both modes.

use super::netns::Net;
use super::ringtrain;
use super::tls::Pki;
use serde_json::Value;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Extra command-line flags of each kind of process.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// Appended to `ringtrain coordinator`.
    pub coordinator: Vec<String>,
    /// Appended to `ringtrain worker`.
    pub worker: Vec<String>,
    /// Appended to every client command (`submit`, `status`, `workers`, ...).
    pub client: Vec<String>,
}

/// A child service (coordinator or worker) started with `--stop-on-stdin-eof`.
pub struct Service {
    child: Child,
    stdin: Option<ChildStdin>,
    /// The JSON ready line it printed (bound addresses).
    pub ready: Value,
    log: PathBuf,
}

impl Service {
    /// Starts `ringtrain ARGS --stop-on-stdin-eof` (stderr to `log`) and waits for its ready
    /// line; panics with the log when there is none. The service gets credentials only from its
    /// flags: the cluster secret and client token variables of the test's own environment are
    /// removed.
    pub fn start<S: AsRef<OsStr> + std::fmt::Debug>(args: &[S], log: PathBuf) -> Service {
        Service::spawn(ringtrain(), args, log)
    }

    /// [`Service::start`] with `program` in place of the bare binary (e.g. the binary run in a
    /// network namespace: [`Net::command`]).
    pub fn spawn<S: AsRef<OsStr> + std::fmt::Debug>(
        mut program: Command,
        args: &[S],
        log: PathBuf,
    ) -> Service {
        let mut child = program
            .args(args)
            .arg("--stop-on-stdin-eof")
            .env_remove("RINGTRAIN_CLUSTER_SECRET")
            .env_remove("RINGTRAIN_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("ringtrain starts");
        let stdin = child.stdin.take();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ready: Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| {
            panic!(
                "{args:?}: no ready line ({e}): {line:?}\nlog:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        Service {
            child,
            stdin,
            ready,
            log,
        }
    }

    /// The process id (the program's own, also when started in a namespace).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`"STOP"`, `"CONT"`, ...) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {}", self.pid());
    }

    /// Kills the process with SIGKILL and reaps it (a crash, not a clean stop).
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// What the service logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops cleanly (stdin closed) and asserts a clean exit.
    pub fn stop(mut self) {
        self.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exit {status}; log:\n{}", self.log_text());
                return;
            }
            assert!(
                Instant::now() < deadline,
                "did not stop; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A coordinator and its workers on 127.0.0.1 (ephemeral ports) in a temporary directory.
pub struct Cluster {
    /// Holds the state file and the logs.
    pub dir: tempfile::TempDir,
    /// The coordinator process.
    pub coordinator: Option<Service>,
    /// The worker processes, in start order (named `test-<index>`).
    pub workers: Vec<Service>,
    /// The coordinator's gRPC address, `host:port`.
    pub addr: String,
    /// The flags every process of this cluster is started with.
    pub flags: Flags,
    /// The certificates of a TLS cluster made by [`Cluster::secured`].
    pub pki: Option<Pki>,
    /// The hosts of a cluster made by [`Cluster::in_namespaces`]: host [`CLIENT_HOST`] runs the
    /// client commands, [`COORDINATOR_HOST`] the coordinator, and worker `i` host
    /// [`worker_host`]`(i)`. `None`: every process on 127.0.0.1.
    pub net: Option<Net>,
}

/// The host of a namespaced cluster's client commands.
pub const CLIENT_HOST: usize = 0;
/// The host of a namespaced cluster's coordinator.
pub const COORDINATOR_HOST: usize = 1;

/// The host of a namespaced cluster's worker `i`.
pub fn worker_host(i: usize) -> usize {
    2 + i
}

/// How the processes of a [`Cluster::secured`] cluster talk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// Plain TCP; the credentials alone keep strangers out.
    Plain,
    /// Mutual TLS on every port (clients present a certificate too) as well as the credentials.
    MutualTls,
}

/// The cluster secret of a [`Cluster::secured`] cluster.
pub const SECRET: &str = "cluster-secret-0123456789abcdef";

/// The users of a [`Cluster::secured`] cluster's tokens file: (name, token, role column).
pub const USERS: [(&str, &str, &str); 3] = [
    ("alice", "alice-token-0123456789abcdef", ""),
    ("bob", "bob-token-0123456789abcdef", ""),
    ("ops", "ops-token-0123456789abcdef", "admin"),
];

/// Writes a file readable by its owner only.
pub fn private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

impl Cluster {
    /// A cluster with `workers` idle workers and `flags` on every process.
    pub fn start_with(workers: usize, flags: Flags) -> Cluster {
        Cluster::start_in(tempfile::tempdir().unwrap(), workers, flags, None, None)
    }

    /// A cluster whose client, coordinator and `hosts - 2` possible workers each run on a host of
    /// their own ([`Net`]), `workers` of them started; `None` (after printing why) where
    /// namespaces are unavailable (see [`Net::or_skip`]).
    pub fn in_namespaces(
        hosts: usize,
        workers: usize,
        flags: Flags,
        test: &str,
    ) -> Option<Cluster> {
        assert!(
            workers + 2 <= hosts,
            "{workers} workers need {} hosts",
            workers + 2
        );
        let net = Net::or_skip(hosts, test)?;
        Some(Cluster::start_in(
            tempfile::tempdir().unwrap(),
            workers,
            flags,
            None,
            Some(net),
        ))
    }

    /// The binary, to run on `host` of a namespaced cluster (on this host otherwise).
    fn program(&self, host: usize) -> Command {
        match &self.net {
            Some(net) => net.command(host, OsStr::new(env!("CARGO_BIN_EXE_ringtrain"))),
            None => ringtrain(),
        }
    }

    /// The address services on `host` listen on.
    fn host_addr(&self, host: usize) -> String {
        self.net
            .as_ref()
            .map_or_else(|| "127.0.0.1".to_string(), |net| net.addr(host))
    }

    /// A cluster whose coordinator requires the cluster secret ([`SECRET`]) from workers and a
    /// client token ([`USERS`]) from clients, over `wire`; client commands run as `alice`
    /// (`token-alice` in the cluster's directory; [`Cluster::token_file`] names each user's).
    pub fn secured(workers: usize, wire: Wire) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str| dir.path().join(name).display().to_string();
        private(&dir.path().join("secret"), &format!("{SECRET}\n"));
        let mut tokens = String::from("# user token [role]\n");
        for (user, token, role) in USERS {
            tokens += &format!("{user} {token} {role}\n");
            private(&dir.path().join(format!("token-{user}")), token);
        }
        private(&dir.path().join("tokens"), &tokens);
        let pki = (wire == Wire::MutualTls).then(Pki::new);
        let mut flags = pki.as_ref().map(|p| p.flags(true)).unwrap_or_default();
        flags.coordinator.extend([
            "--cluster-secret-file".into(),
            p("secret"),
            "--client-tokens-file".into(),
            p("tokens"),
        ]);
        flags
            .worker
            .extend(["--cluster-secret-file".into(), p("secret")]);
        flags
            .client
            .extend(["--token-file".into(), p("token-alice")]);
        Cluster::start_in(dir, workers, flags, pki, None)
    }

    /// The token file of `user` (one of [`USERS`]) of a [`Cluster::secured`] cluster.
    pub fn token_file(&self, user: &str) -> String {
        self.dir
            .path()
            .join(format!("token-{user}"))
            .display()
            .to_string()
    }

    /// The client flags of a [`Cluster::secured`] cluster with `user`'s token instead.
    pub fn client_flags_as(&self, user: &str) -> Vec<String> {
        let mut flags = self.tls_client_flags();
        flags.extend(["--token-file".into(), self.token_file(user)]);
        flags
    }

    /// The TLS flags a client of this cluster needs (CA and certificate), none without TLS.
    pub fn tls_client_flags(&self) -> Vec<String> {
        self.pki
            .as_ref()
            .map(|p| p.client_flags(true))
            .unwrap_or_default()
    }

    /// A raw gRPC channel to `addr` ("host:port": the coordinator or a worker's peer port),
    /// over TLS with the cluster's certificate when it has TLS: an insider who can reach every
    /// port and holds a certificate the cluster trusts, but none of its secrets.
    pub async fn channel(&self, addr: &str) -> tonic::transport::Channel {
        let tls = self.pki.as_ref().map(|p| p.pem.config(false).unwrap());
        ringtrain_proto::tls::endpoint(addr, tls.as_ref())
            .unwrap()
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect to {addr}: {e:?}"))
    }

    fn start_in(
        dir: tempfile::TempDir,
        workers: usize,
        flags: Flags,
        pki: Option<Pki>,
        net: Option<Net>,
    ) -> Cluster {
        let mut c = Cluster {
            dir,
            coordinator: None,
            workers: Vec::new(),
            addr: String::new(),
            flags,
            pki,
            net,
        };
        c.start_coordinator();
        for _ in 0..workers {
            c.add_worker();
        }
        c.wait_idle_workers(workers);
        c
    }

    /// Starts the coordinator; again after a kill: the same state file and address, so the
    /// workers find it.
    pub fn start_coordinator(&mut self) {
        let state = self.dir.path().join("state.db");
        let listen = if self.addr.is_empty() {
            format!("{}:0", self.host_addr(COORDINATOR_HOST))
        } else {
            self.addr.clone()
        };
        let mut args: Vec<String> = [
            "coordinator",
            "--listen",
            &listen,
            "--metrics-listen",
            "127.0.0.1:0",
            "--state",
            state.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec();
        // Test timings, unless the cluster's flags set their own.
        for (flag, value) in [
            ("--lease-ms", "3000"),
            ("--heartbeat-wait-ms", "300"),
            ("--collective-timeout-ms", "10000"),
            ("--checksum-every", "5"),
        ] {
            if !self.flags.coordinator.iter().any(|f| f == flag) {
                args.extend([flag.to_string(), value.to_string()]);
            }
        }
        args.extend(self.flags.coordinator.iter().cloned());
        // A restarted coordinator logs to a new file, so the crashed one's log is kept.
        let log = (0..)
            .map(|n| match n {
                0 => self.dir.path().join("coordinator.log"),
                n => self.dir.path().join(format!("coordinator-{n}.log")),
            })
            .find(|p| !p.exists())
            .unwrap();
        let coordinator = Service::spawn(self.program(COORDINATOR_HOST), &args, log);
        self.addr = coordinator.ready["grpc"].as_str().unwrap().to_string();
        self.coordinator = Some(coordinator);
    }

    /// Starts one more worker.
    pub fn add_worker(&mut self) {
        let svc = self.spawn_worker(self.workers.len());
        self.workers.push(svc);
    }

    /// Kills worker `i` (`kill -9`) and starts it again on the same host under the same name
    /// (a new registration: the coordinator sees a new worker id).
    pub fn restart_worker(&mut self, i: usize) {
        self.workers[i].kill9();
        self.workers[i] = self.spawn_worker(i);
    }

    /// Starts worker `i` (name `test-<i>`, on host [`worker_host`]`(i)` of a namespaced
    /// cluster); a restarted worker logs to a new file, so the killed one's log is kept.
    fn spawn_worker(&self, i: usize) -> Service {
        let host = self.host_addr(worker_host(i));
        let mut args: Vec<String> = [
            "worker",
            "--coordinator",
            &self.addr,
            "--listen",
            &format!("{host}:0"),
            "--advertise",
            &host,
            "--metrics-listen",
            "127.0.0.1:0",
            "--threads",
            "1",
            "--name",
            &format!("test-{i}"),
        ]
        .map(String::from)
        .to_vec();
        args.extend(self.flags.worker.iter().cloned());
        let log = (0..)
            .map(|n| match n {
                0 => self.dir.path().join(format!("worker-{i}.log")),
                n => self.dir.path().join(format!("worker-{i}-{n}.log")),
            })
            .find(|p| !p.exists())
            .unwrap();
        Service::spawn(self.program(worker_host(i)), &args, log)
    }

    /// Runs a client command against this cluster with the cluster's client flags.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with(args, &self.flags.client)
    }

    /// Runs a client command against this cluster with the given client flags instead.
    pub fn cli_with(&self, args: &[&str], client: &[String]) -> Output {
        self.program(CLIENT_HOST)
            .args(args)
            .args(["--coordinator", &self.addr])
            .args(client)
            .env_remove("RINGTRAIN_TOKEN")
            .output()
            .expect("ringtrain runs")
    }

    /// [`Cluster::cli`], asserting success; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "ringtrain {args:?} failed\nstdout:\n{}\nstderr:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A client command with `--output json`, parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let text = self.cli_ok(&all);
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    /// Submits a spec file; returns the job id.
    pub fn submit(&self, spec: &Path) -> String {
        let v = self.json(&["submit", spec.to_str().unwrap()]);
        v["id"].as_str().unwrap().to_string()
    }

    /// Polls the job until `pred` holds, or panics after `secs` with the job and the logs.
    pub fn wait_job(&self, id: &str, secs: u64, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let job = self.json(&["status", id]);
            if pred(&job) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} did not get there in {secs} s: {job:#}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (up to 60 s) until `n` workers are registered and idle.
    pub fn wait_idle_workers(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let workers = self.json(&["workers"]);
            let idle = workers
                .as_array()
                .unwrap()
                .iter()
                .filter(|w| w["state"] == "idle")
                .count();
            if idle >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{idle} of {n} workers idle: {workers:#}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The index in `workers` of the worker that runs `rank` of `job` (a job document from
    /// `status`).
    pub fn worker_of(&self, job: &Value, rank: usize) -> usize {
        let id = job["workers"][rank].as_str().unwrap();
        let workers = self.json(&["workers"]);
        let name =
            workers
                .as_array()
                .unwrap()
                .iter()
                .find(|w| w["id"] == id)
                .unwrap_or_else(|| panic!("worker {id} of rank {rank} is not listed: {workers:#}"))
                ["name"]
                .as_str()
                .unwrap();
        name.trim_start_matches("test-").parse().unwrap()
    }

    /// Every service's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        if let Some(c) = &self.coordinator {
            out += &format!("--- coordinator\n{}\n", c.log_text());
        }
        for (i, w) in self.workers.iter().enumerate() {
            out += &format!("--- worker {i}\n{}\n", w.log_text());
        }
        out
    }

    /// Stops the workers, then the coordinator, asserting clean exits.
    pub fn stop(mut self) {
        for w in self.workers.drain(..) {
            w.stop();
        }
        if let Some(c) = self.coordinator.take() {
            c.stop();
        }
    }
}
