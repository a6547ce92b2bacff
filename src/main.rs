use std::process::ExitCode;

// Many small, short-lived allocations per request; mimalloc handles them with less
// contention and fewer cycles than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use pgrest::config::ConfigSource;
use pgrest::server;

const HELP: &str = "\
pgrest - a PostgREST-compatible REST API for PostgreSQL

Usage: pgrest [OPTIONS] [CONFIG_FILE]

With no db-uri configured (or with --demo), pgrest starts a throwaway local PostgreSQL
with a demo schema and serves it.

Options:
  -h, --help         print this help and exit
  -v, --version      print the version and exit
  --dump-config      print the effective configuration (file + PGRST_* environment) and exit
  --demo             serve the demo database even if db-uri is set

Configuration: PostgREST's file format (key = \"value\") and PGRST_* environment variables
(e.g. PGRST_DB_URI for db-uri); the environment overrides the file.";

fn main() -> ExitCode {
    let mut file = None;
    let mut dump = false;
    let mut demo = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("{HELP}");
                return ExitCode::SUCCESS;
            }
            "-v" | "--version" => {
                println!("pgrest {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            "--dump-config" => dump = true,
            "--demo" => demo = true,
            flag if flag.starts_with('-') => {
                eprintln!("pgrest: unknown option {flag} (see --help)");
                return ExitCode::from(2);
            }
            path => file = Some(path.to_string()),
        }
    }
    match run(file, dump, demo) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgrest: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(file: Option<String>, dump: bool, demo: bool) -> Result<(), String> {
    let source = ConfigSource {
        file,
        overrides: Vec::new(),
    };
    let config = source.load()?;
    if dump {
        print!("{}", config.dump());
        return Ok(());
    }
    server::init_logging(config.log_level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    // A user who sets PGHOST (or PGDATABASE, ...) means their database, not the demo.
    let names_a_database = config.db_uri.is_some()
        || pgrest::db::tls::libpq_env_names_a_database(|k| std::env::var(k).ok());
    if demo || !names_a_database {
        runtime.block_on(server::run_demo(source))
    } else {
        runtime.block_on(server::run(source))
    }
}
