//! Decides whether the PostgreSQL tests run: with `ADBAPI_PG_URL` set at
//! build time they are compiled in (`cfg(pg_available)`); without it they are
//! compiled as ignored, with a `SKIPPED` reason in the test output and a cargo
//! warning here. `ADBAPI_REQUIRE_PG=1` (set by `.ci/run`) turns a missing URL
//! into a build error, so CI never passes with them skipped.

fn main() {
    mysql();
    println!("cargo::rustc-check-cfg=cfg(pg_available)");
    println!("cargo::rerun-if-env-changed=ADBAPI_PG_URL");
    println!("cargo::rerun-if-env-changed=ADBAPI_REQUIRE_PG");
    let url = std::env::var("ADBAPI_PG_URL").unwrap_or_default();
    if !url.is_empty() {
        println!("cargo::rustc-cfg=pg_available");
        return;
    }
    if std::env::var("ADBAPI_REQUIRE_PG").is_ok_and(|v| v == "1") {
        panic!(
            "ADBAPI_REQUIRE_PG=1 but ADBAPI_PG_URL is not set: the PostgreSQL tests must run here"
        );
    }
    println!(
        "cargo::warning=ADBAPI_PG_URL is not set: the PostgreSQL tests are SKIPPED (reported as ignored). \
         Run them with: eval \"$(scripts/pg-test-server start)\" && cargo test --workspace"
    );
}

/// The same convention for MySQL/MariaDB: `ADBAPI_MYSQL_URL` compiles the
/// tests in (`cfg(mysql_available)`), `ADBAPI_REQUIRE_MYSQL=1` makes a
/// missing URL a build error.
fn mysql() {
    println!("cargo::rustc-check-cfg=cfg(mysql_available)");
    println!("cargo::rerun-if-env-changed=ADBAPI_MYSQL_URL");
    println!("cargo::rerun-if-env-changed=ADBAPI_REQUIRE_MYSQL");
    let url = std::env::var("ADBAPI_MYSQL_URL").unwrap_or_default();
    if !url.is_empty() {
        println!("cargo::rustc-cfg=mysql_available");
        return;
    }
    if std::env::var("ADBAPI_REQUIRE_MYSQL").is_ok_and(|v| v == "1") {
        panic!(
            "ADBAPI_REQUIRE_MYSQL=1 but ADBAPI_MYSQL_URL is not set: the MySQL tests must run here"
        );
    }
    println!(
        "cargo::warning=ADBAPI_MYSQL_URL is not set: the MySQL/MariaDB tests are SKIPPED (reported as ignored). \
         Run them with: eval \"$(scripts/mysql-test-server start)\" && cargo test --workspace"
    );
}
