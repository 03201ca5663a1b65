//! GlueSQL on Helio, end to end: opens a database in a local directory, creates tables,
//! inserts, queries (by key, by index, a join, an aggregate, a transaction), closes, reopens
//! and queries again.
//!
//! `cargo run --release -p helio-gluesql --example sql [DIR]` (default `helio-sql-example`;
//! the directory is emptied first).

use gluesql_core::error::Result;
use gluesql_core::prelude::{Glue, Payload};
use helio_gluesql::HelioStorage;

fn main() -> Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "helio-sql-example".to_owned());
    // A fresh database each run; a missing directory is fine.
    let _ = std::fs::remove_dir_all(&dir);
    println!("database in {dir}");

    let mut glue = Glue::new(HelioStorage::open(&dir)?);
    run(&mut glue, "CREATE TABLE city (id INTEGER PRIMARY KEY, name TEXT, country TEXT, people INTEGER)")?;
    run(&mut glue, "CREATE TABLE country (code TEXT PRIMARY KEY, name TEXT)")?;
    run(&mut glue, "CREATE INDEX city_people ON city (people)")?;
    run(
        &mut glue,
        "INSERT INTO city VALUES (1, 'Lyon', 'FR', 522000), (2, 'Porto', 'PT', 232000), \
         (3, 'Bordeaux', 'FR', 261000), (4, 'Braga', 'PT', 193000)",
    )?;
    run(&mut glue, "INSERT INTO country VALUES ('FR', 'France'), ('PT', 'Portugal')")?;
    run(&mut glue, "SELECT name FROM city WHERE id = 3")?;
    run(&mut glue, "SELECT name, people FROM city WHERE people > 240000 ORDER BY people DESC")?;
    run(
        &mut glue,
        "SELECT country.name, COUNT(*) AS cities FROM city JOIN country ON city.country = country.code \
         GROUP BY country.name",
    )?;
    run(&mut glue, "BEGIN")?;
    run(&mut glue, "UPDATE city SET people = people + 1000 WHERE country = 'PT'")?;
    run(&mut glue, "ROLLBACK")?;
    run(&mut glue, "BEGIN")?;
    run(&mut glue, "DELETE FROM city WHERE id = 4")?;
    run(&mut glue, "COMMIT")?;
    glue.storage.close()?;

    println!("-- reopened");
    let mut glue = Glue::new(HelioStorage::open(&dir)?);
    run(&mut glue, "SELECT id, name, people FROM city")?;
    glue.storage.close()
}

/// Executes `sql` and prints what it returned.
fn run(glue: &mut Glue<HelioStorage>, sql: &str) -> Result<()> {
    println!("> {sql}");
    for payload in glue.execute(sql)? {
        print_payload(&payload);
    }
    Ok(())
}

fn print_payload(payload: &Payload) {
    match payload {
        Payload::Select { labels, rows } => {
            println!("  {}", labels.join(" | "));
            for row in rows {
                let cells: Vec<String> = row.iter().map(|v| format!("{v:?}")).collect();
                println!("  {}", cells.join(" | "));
            }
        }
        other => println!("  {other:?}"),
    }
}
