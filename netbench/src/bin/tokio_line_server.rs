//! `tokio_line_server --port P --db PATH [--pool 4] [--flavor current|multi]
//! [--workers 2]`: the tokio peer of our database-backed line server (see
//! `netbench::line_service`), on 127.0.0.1. `--pool` caps tokio's blocking
//! threads, hence the SQLite connections; `--workers` is the multi-thread
//! flavour's worker count. Prints `listening 127.0.0.1:PORT` once bound
//! (`--port 0` picks a free port) and serves until killed.

use std::path::PathBuf;
use std::process::ExitCode;

use netbench::args::Args;
use netbench::{line_service, logging, loopback, rlimit};

fn main() -> ExitCode {
    logging::init();
    // The idle test holds 10 000 connections open.
    if let Err(e) = rlimit::raise_nofile() {
        tracing::warn!("RLIMIT_NOFILE: {e}");
    }
    let run = || -> Result<(), Box<dyn std::error::Error>> {
        let args = Args::parse(
            std::env::args().skip(1),
            &["port", "db", "pool", "flavor", "workers"],
        )?;
        let addr = loopback::target("127.0.0.1", args.require("port")?)?;
        let db: PathBuf = args.require("db")?;
        if !db.is_file() {
            return Err(format!("--db {}: no such file (run setup_db first)", db.display()).into());
        }
        let pool: usize = args.get_or("pool", 4)?;
        if pool == 0 {
            return Err("--pool must be at least 1".into());
        }
        let flavor: String = args.get_or("flavor", "current".to_owned())?;
        let mut builder = match flavor.as_str() {
            "current" => tokio::runtime::Builder::new_current_thread(),
            "multi" => {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(args.get_or("workers", 2)?);
                b
            }
            other => return Err(format!("--flavor {other:?}: expected current or multi").into()),
        };
        let rt = builder.enable_all().max_blocking_threads(pool).build()?;
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            logging::emit(&format!("listening {}", listener.local_addr()?));
            line_service::serve(listener, db).await;
            Ok(())
        })
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("tokio_line_server: {e}");
            ExitCode::FAILURE
        }
    }
}
