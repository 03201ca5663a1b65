//! The `helio` command: put, get, scan, stats and check on a real store; one-line errors;
//! `check` exits 1 on corruption and names the file and offset.

use std::path::Path;
use std::process::{Command, Output};

use helio::core::log::crc32c_of;
use helio::core::log::page::PageTable;
use helio::{Config, Store};

fn helio(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_helio")).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn config(dir: &Path) -> Config {
    Config::new(dir).shards(2).segment_bytes(1 << 20).write_buffer_bytes(64 << 10)
}

#[test]
fn put_get_scan_stats_check_and_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(config(&dir)).unwrap();
    for i in 0..2000u32 {
        store.put(format!("key{i:05}").as_bytes(), format!("value{i}").as_bytes()).unwrap();
    }
    store.close().unwrap();
    let d = dir.to_str().unwrap();

    let put = helio(&["put", d, "hello", "world"]);
    assert!(put.status.success(), "{}", text(&put.stderr));
    let get = helio(&["get", d, "hello"]);
    assert_eq!(text(&get.stdout), "world\n");
    let missing = helio(&["get", d, "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(text(&missing.stderr), "helio: nope: not found\n");
    let scan = helio(&["scan", d, "--from", "key00010", "--limit", "3", "--rev"]);
    assert_eq!(text(&scan.stdout), "key01999\tvalue1999\nkey01998\tvalue1998\nkey01997\tvalue1997\n");
    let scan = helio(&["scan", d, "--from", "key00010", "--to", "key00012"]);
    assert_eq!(text(&scan.stdout), "key00010\tvalue10\nkey00011\tvalue11\n");
    let stats = helio(&["stats", d]);
    assert!(text(&stats.stdout).contains("total"), "{}", text(&stats.stdout));
    let check = helio(&["check", d]);
    assert!(check.status.success(), "{}{}", text(&check.stdout), text(&check.stderr));
    assert_eq!(text(&check.stdout).matches(": ok:").count(), 2);

    // Damage a record in the middle of shard 0's log: check must say where, and fail.
    let segment = dir.join("shard-0000/segment-0000000000000000");
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[5000] ^= 0x40;
    std::fs::write(&segment, &bytes).unwrap();
    let check = helio(&["check", d]);
    assert_eq!(check.status.code(), Some(1));
    let out = text(&check.stdout);
    assert!(out.contains("shard 0: CORRUPT") && out.contains("segment-0000000000000000 at offset"), "{out}");
    assert!(out.contains("shard 1: ok"), "{out}");

    // A store open elsewhere is not checked under its writer's feet.
    std::fs::write(&segment, &{
        let mut b = bytes.clone();
        b[5000] ^= 0x40;
        b
    })
    .unwrap();
    let open = Store::open(config(&dir)).unwrap();
    let locked = helio(&["check", d]);
    assert_eq!(locked.status.code(), Some(1));
    assert!(text(&locked.stderr).contains("open in another process"), "{}", text(&locked.stderr));
    open.close().unwrap();

    // A page table whose chain names a record the log does not hold, sealed with a good
    // checksum: only the chain check can find it.
    let healthy = helio(&["check", d]);
    assert!(healthy.status.success(), "{}", text(&healthy.stdout));
    assert!(text(&healthy.stdout).contains("every chain whole"), "{}", text(&healthy.stdout));
    assert!(
        !text(&healthy.stdout).contains(" 0 page records"),
        "a close writes the pages: {}",
        text(&healthy.stdout)
    );
    let table_file = dir.join("shard-0001/PAGES");
    let good = std::fs::read(&table_file).unwrap();
    let (mark, table) = PageTable::decode(&good).unwrap();
    let mut moved = PageTable::new();
    for mut entry in table.entries().cloned() {
        entry.chain[0].bytes += 1;
        moved.insert(entry);
    }
    // With the original's `folded` mark (bytes 20..28), so that a check folds what an open would.
    let mut bytes = moved.encode(&mark);
    bytes[20..28].copy_from_slice(&good[20..28]);
    let body = bytes.len() - 4;
    let crc = crc32c_of(&bytes[..body]);
    bytes[body..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&table_file, bytes).unwrap();
    let check = helio(&["check", d]);
    assert_eq!(check.status.code(), Some(1));
    let out = text(&check.stdout);
    assert!(out.contains("shard 1: CORRUPT") && out.contains("not as long as the table says"), "{out}");
    std::fs::write(&table_file, good).unwrap();

    // Errors are one line, not a panic.
    let nothing = helio(&["get", tmp.path().join("absent").to_str().unwrap(), "k"]);
    assert_eq!(nothing.status.code(), Some(1));
    let err = text(&nothing.stderr);
    assert!(err.starts_with("helio: ") && err.lines().count() == 1, "{err}");
}
