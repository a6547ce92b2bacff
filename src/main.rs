use std::process::ExitCode;

// Many small, short-lived allocations per request; mimalloc handles them with less
// contention and fewer cycles than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// No transparent huge pages for this process. Where THP is `madvise` (Debian's default)
/// mimalloc's own MADV_HUGEPAGE on its arenas had every 2 MiB region it touched backed
/// whole: idle on the bench schema 10,240 kB of a 20,900 kB RSS for about 2,200 kB of heap
/// in use. mimalloc's `no_thp` feature (Cargo.toml) drops that madvise, which has to be
/// decided before main since mimalloc reserves its first arena earlier; this flag covers
/// hosts where THP is `always` and the kernel would back the same regions unasked (the
/// kernel checks it at each page fault: set in main alone, it took idle RSS to 14,500 kB).
/// Together: idle 11,100 kB, peak at 64 connections of by-pk load 27,000 -> 17,500 kB, CPU
/// per request unchanged (the heap is too small for TLB misses to matter). The demo's
/// PostgreSQL, a child, inherits the flag; a throwaway cluster loses nothing by it.
fn disable_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE only sets a flag on this process; no pointers.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

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
  --dump-config      print the effective configuration (file, PGRST_* environment and,
                     when the database answers, its in-database settings) and exit
  --dump-schema      print the schema cache as JSON and exit
  --example          print an annotated example configuration file and exit
  --ready            ask the admin server's /ready; exit 0 when ready, 1 otherwise
                     (for container health checks)
  --demo             serve the demo database even if db-uri is set

Subcommands:
  token --role ROLE [--exp 1h] [CONFIG_FILE]
                     print a JWT for ROLE signed with the configured jwt-secret (HS256)

Configuration: PostgREST's file format (key = \"value\") and PGRST_* environment variables
(e.g. PGRST_DB_URI for db-uri); the environment overrides the file.";

/// What the command line asks for.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Serve,
    Demo,
    DumpConfig,
    DumpSchema,
    Ready,
}

fn main() -> ExitCode {
    disable_transparent_huge_pages();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("token") {
        return report(token(&args[1..]));
    }
    let mut file = None;
    let mut mode = Mode::Serve;
    for arg in args {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("{HELP}");
                return ExitCode::SUCCESS;
            }
            "-v" | "--version" => {
                println!("pgrest {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            "--dump-config" => mode = Mode::DumpConfig,
            "--dump-schema" => mode = Mode::DumpSchema,
            "--ready" => mode = Mode::Ready,
            "--demo" => mode = Mode::Demo,
            "--example" => {
                print!("{}", pgrest::config::EXAMPLE);
                return ExitCode::SUCCESS;
            }
            flag if flag.starts_with('-') => {
                eprintln!("pgrest: unknown option {flag} (see --help)");
                return ExitCode::from(2);
            }
            path => file = Some(path.to_string()),
        }
    }
    report(run(file, mode))
}

fn report(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgrest: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `pgrest token --role ROLE [--exp 1h] [CONFIG_FILE]`: prints a JWT for trying the API.
fn token(args: &[String]) -> Result<(), String> {
    let (mut role, mut lifetime, mut file) = (None, 3600, None);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--role" => role = args.next().cloned(),
            "--exp" => {
                let text = args.next().ok_or("--exp needs a lifetime (e.g. 1h)")?;
                lifetime = pgrest::auth::parse_lifetime(text)?;
            }
            flag if flag.starts_with('-') => {
                return Err(format!("unknown option {flag} for token"))
            }
            path => file = Some(path.to_string()),
        }
    }
    let role = role.ok_or("usage: pgrest token --role ROLE [--exp 1h] [CONFIG_FILE]")?;
    let config = ConfigSource {
        file,
        overrides: Vec::new(),
    }
    .load()?;
    let secret = config
        .jwt_secret
        .as_deref()
        .ok_or("jwt-secret is not set (PGRST_JWT_SECRET or the config file)")?;
    let token = pgrest::auth::sign_token(secret, config.jwt_secret_is_base64, &role, lifetime)?;
    println!("{token}");
    Ok(())
}

fn run(file: Option<String>, mode: Mode) -> Result<(), String> {
    let source = ConfigSource {
        file,
        overrides: Vec::new(),
    };
    let config = source.load()?;
    if mode == Mode::Ready {
        return server::ask_ready(&config);
    }
    if mode != Mode::DumpConfig {
        pgrest::ops::logging::init_logging(config.log_level);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    // A user who sets PGHOST (or PGDATABASE, ...) means their database, not the demo.
    let names_a_database = config.db_uri.is_some()
        || pgrest::db::tls::libpq_env_names_a_database(|k| std::env::var(k).ok());
    match mode {
        Mode::DumpConfig => {
            print!(
                "{}",
                runtime.block_on(server::effective_config(config)).dump()
            );
            Ok(())
        }
        Mode::DumpSchema => {
            println!("{}", runtime.block_on(server::schema_json(config))?);
            Ok(())
        }
        Mode::Serve if names_a_database => runtime.block_on(server::run(source)),
        _ => runtime.block_on(server::run_demo(source)),
    }
}
