//! `setup_db --db PATH [--users 10000]`: makes the SQLite database every
//! line server of the benchmark reads (see `netbench::users`), from scratch.

use std::path::PathBuf;
use std::process::ExitCode;

use netbench::args::Args;
use netbench::{logging, users};

fn main() -> ExitCode {
    logging::init();
    let run = || -> Result<String, Box<dyn std::error::Error>> {
        let args = Args::parse(std::env::args().skip(1), &["db", "users"])?;
        let db: PathBuf = args.require("db")?;
        let count: u32 = args.get_or("users", users::DEFAULT_USERS)?;
        users::create_db(&db, count)?;
        Ok(format!("db={} users={count}", db.display()))
    };
    match run() {
        Ok(line) => {
            logging::emit(&line);
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("setup_db: {e}");
            ExitCode::FAILURE
        }
    }
}
