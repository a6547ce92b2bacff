//! A throwaway local PostgreSQL cluster (initdb + pg_ctl in a temp dir), for the demo and
//! for the test suite. When run as root the cluster runs as the `postgres` OS user, since
//! PostgreSQL refuses to run as root.

use std::path::PathBuf;
use std::process::{Command, Stdio};

pub struct TempCluster {
    pub dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
    as_postgres: bool,
}

/// Finds the directory holding initdb and pg_ctl: PATH first, then Debian's layout.
pub fn find_pg_bin() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return Some(dir);
            }
        }
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|d| d.join("initdb").is_file())
        .collect();
    candidates.sort();
    candidates.pop()
}

/// A TCP port of 127.0.0.1 that is free now, for a server about to be started on it.
pub fn free_port() -> std::io::Result<u16> {
    // The kernel may hand the same ephemeral port to two binds in a row once the first
    // listener is closed: two servers given ports by back-to-back calls then collided
    // (seen in CI as "admin-server-port cannot be the same as server-port"). A port is
    // handed out once per process.
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    for _ in 0..64 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if given.insert(port) {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no free port that was not handed out before",
    ))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

impl TempCluster {
    /// initdb + start. `name` becomes part of the temp dir name.
    pub fn start(name: &str) -> Result<TempCluster, String> {
        let bin = find_pg_bin().ok_or_else(|| {
            "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under \
             /usr/lib/postgresql/*/bin; install them, e.g. `apt-get install -y postgresql`"
                .to_string()
        })?;
        let cluster = TempCluster::create_dir(name, bin)?;
        let data = cluster.data_dir();
        cluster.run(
            cluster
                .pg_command("initdb")
                .args([
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--no-sync",
                    "-D",
                ])
                .arg(&data),
            true,
        )?;
        cluster.resume()?;
        Ok(cluster)
    }

    /// A streaming standby of this cluster, started: `pg_basebackup -R` (initdb's
    /// defaults already allow it: wal_level replica, max_wal_senders 10 and a trusted
    /// `host replication` line for 127.0.0.1 in pg_hba.conf), on a port of its own, with
    /// hot_standby (the default) so it answers reads. `-c fast`: the backup starts with
    /// an immediate checkpoint instead of a spread one, which took up to a minute.
    pub fn start_standby(&self, name: &str) -> Result<TempCluster, String> {
        let standby = TempCluster::create_dir(name, self.bin.clone())?;
        let mut backup = standby.pg_command("pg_basebackup");
        backup
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-X", "stream", "-R", "--no-sync", "-c", "fast", "-D"])
            .arg(standby.data_dir());
        let started = standby
            .run(&mut backup, true)
            .and_then(|_| standby.resume());
        match started {
            Ok(()) => Ok(standby),
            Err(e) => {
                // Nothing is left behind: the partial copy and a server that did start.
                standby.stop();
                Err(e)
            }
        }
    }

    /// An empty temp dir for a cluster (owned by postgres when running as root), and a
    /// free port.
    fn create_dir(name: &str, bin: PathBuf) -> Result<TempCluster, String> {
        let dir = std::env::temp_dir().join(format!("pgrest-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {dir:?}: {e}"))?;
        let cluster = TempCluster {
            port: free_port().map_err(|e| e.to_string())?,
            dir,
            bin,
            as_postgres: is_root(),
        };
        if cluster.as_postgres {
            cluster.run(
                Command::new("chown")
                    .args(["postgres:postgres"])
                    .arg(&cluster.dir),
                false,
            )?;
        }
        Ok(cluster)
    }

    /// Starts the server of an initialised (or paused) cluster.
    pub fn resume(&self) -> Result<(), String> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c synchronous_commit=off",
            self.port,
            self.dir.display()
        );
        self.run(
            self.pg_command("pg_ctl")
                .args(["-w", "-D"])
                .arg(self.data_dir())
                .args(["-l"])
                .arg(self.dir.join("log"))
                .args(["-o", &opts, "start"]),
            true,
        )
    }

    /// Stops the server but keeps the data, as an outage would (for tests).
    pub fn pause(&self) -> Result<(), String> {
        self.run(
            self.pg_command("pg_ctl")
                .args(["-w", "-m", "fast", "-D"])
                .arg(self.data_dir())
                .arg("stop"),
            true,
        )
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Writes a file into the data directory (certificates, pg_hba.conf), owned by the
    /// user the server runs as, with permissions `mode`; `append` adds to it instead.
    pub fn write_data_file(
        &self,
        name: &str,
        contents: &[u8],
        mode: u32,
        append: bool,
    ) -> Result<(), String> {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let path = self.data_dir().join(name);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&path)
            .map_err(|e| format!("cannot write {path:?}: {e}"))?;
        file.write_all(contents)
            .map_err(|e| format!("cannot write {path:?}: {e}"))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot chmod {path:?}: {e}"))?;
        if self.as_postgres {
            self.run(
                Command::new("chown").arg("postgres:postgres").arg(&path),
                false,
            )?;
        }
        Ok(())
    }

    /// A PostgreSQL program: next to initdb, or next to what initdb links to (a PATH
    /// directory may hold links to initdb and pg_ctl only, not pg_basebackup).
    fn program(&self, program: &str) -> PathBuf {
        let exe = self.bin.join(program);
        if exe.is_file() {
            return exe;
        }
        std::fs::canonicalize(self.bin.join("initdb"))
            .ok()
            .and_then(|initdb| Some(initdb.parent()?.join(program)))
            .unwrap_or(exe)
    }

    fn pg_command(&self, program: &str) -> Command {
        let exe = self.program(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn run(&self, cmd: &mut Command, quiet: bool) -> Result<(), String> {
        if quiet {
            cmd.stdout(Stdio::null());
        }
        let out = cmd
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{cmd:?} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    pub fn uri(&self, db: &str) -> String {
        self.uri_as("postgres", db)
    }

    pub fn uri_as(&self, user: &str, db: &str) -> String {
        format!("postgresql://{user}@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs SQL text (several statements allowed) in database `db`.
    pub async fn execute(&self, db: &str, sql: &str) -> Result<(), String> {
        let (client, connection) = tokio_postgres::connect(&self.uri(db), tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("cannot connect to the cluster: {e}"))?;
        let conn = tokio::spawn(connection);
        let result = client
            .batch_execute(sql)
            .await
            .map_err(|e| match e.as_db_error() {
                Some(db) => format!("{}: {}", db.code().code(), db.message()),
                None => e.to_string(),
            });
        drop(client);
        let _ = conn.await;
        result
    }

    /// Shell text that stops this cluster and removes its directory.
    pub fn teardown_script(&self) -> String {
        let pg_ctl = self.bin.join("pg_ctl");
        let prefix = if self.as_postgres {
            "runuser -u postgres -- "
        } else {
            ""
        };
        format!(
            "{prefix}{} -D {} -m immediate stop >/dev/null 2>&1; rm -rf {}",
            pg_ctl.display(),
            self.data_dir().display(),
            self.dir.display()
        )
    }

    pub fn stop(&self) {
        let _ = Command::new("sh")
            .args(["-c", &self.teardown_script()])
            .status();
    }

    /// Stops the cluster once process `pid` has exited, even if it dies without cleaning up.
    pub fn stop_when_process_exits(&self, pid: u32) {
        run_after_exit(pid, &self.teardown_script());
    }
}

/// Runs shell `script` in a detached watcher once process `pid` has exited.
pub fn run_after_exit(pid: u32, script: &str) {
    let script = format!("while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {script}");
    let _ = Command::new("setsid")
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}
