//! The workload runner end to end: every workload at a tiny size on every engine compiled in, at
//! one and two cores; the report files must exist and parse, and hold a checked result for every
//! engine, core count and workload; repeated rounds report medians.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Runs `helio-bench` with `args` on data under `root`, its report in `out`; the report.
fn run_with(out: &Path, root: &Path, args: &[&str]) -> Value {
    let status = Command::new(env!("CARGO_BIN_EXE_helio-bench"))
        .args(args)
        .arg("--dir")
        .arg(root)
        .arg("--out")
        .arg(out)
        .status()
        .expect("helio-bench runs");
    assert!(status.success(), "helio-bench failed: {status}");
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap())
        .expect("report.json parses")
}

fn run(out: &Path, root: &Path) -> Value {
    let args = ["--keys", "3000", "--ops", "3000", "--sync-ops", "128", "--sync-threads", "1,8"];
    run_with(out, root, &[&args[..], &["--workloads", "all", "--cores", "1,2", "--scan-len", "20"]].concat())
}

#[test]
fn every_workload_runs_on_every_engine_and_the_report_parses() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, root) = (tmp.path().join("report"), tmp.path().join("data"));
    std::fs::create_dir_all(&root).unwrap();
    let report = run(&out, &root);
    let results = report["results"].as_array().expect("results");
    let engines: Vec<&str> =
        report["spec"]["engines"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert!(engines.contains(&"helio"));
    let workloads: Vec<String> = report["spec"]["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| match w.as_str().unwrap() {
            "fillsync" => vec!["fillsync-t1".to_string(), "fillsync-t8".to_string()],
            other => vec![other.to_string()],
        })
        .collect();
    assert_eq!(workloads.len(), 19, "every workload, fillsync once per thread count");
    for engine in &engines {
        for cores in [1u64, 2] {
            for w in &workloads {
                let f = results
                    .iter()
                    .find(|f| f["engine"] == *engine && f["workload"] == w.as_str() && f["cores"] == cores)
                    .unwrap_or_else(|| panic!("no result for {engine} {w} at {cores} cores"));
                assert!(f["ops"].as_u64().unwrap() > 0, "{engine} {w}: no operations");
                assert!(f["ops_per_sec"].as_f64().unwrap() > 0.0);
                let reads = ["readrandom", "readseq", "seekrandom", "readwhilewriting", "ycsb-c", "reopen"];
                if reads.contains(&w.as_str()) {
                    assert!(
                        f["checked"].as_u64().unwrap() > 0,
                        "{engine} {w}: nothing read back was checked"
                    );
                }
                if w == "readseq" {
                    // After fillrandom the full scan sees every key exactly once.
                    assert!(f["checked"].as_u64().unwrap() >= 3000, "{engine} readseq saw {}", f["checked"]);
                }
                if w.starts_with("fill") || w == "overwrite" {
                    assert!(f["user_write_bytes"].as_u64().unwrap() > 0);
                }
                if w == "fillbatch" {
                    // Puts counted, one latency per batch of the default 100.
                    assert_eq!(f["ops"], 3000, "{engine} fillbatch");
                    assert_eq!(f["entries_per_call"], 100, "{engine} fillbatch");
                }
                assert!(f["p50_us"].as_f64().unwrap() <= f["p999_us"].as_f64().unwrap());
            }
        }
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    // Helio reports its own counters for every phase (where its page records came from); the
    // peers keep none (`reopen` measures an open, not a phase of the open engine).
    for f in results.iter().filter(|f| f["workload"] != "reopen") {
        let counters = f["engine_counters"].as_array().expect("engine_counters");
        let named = |name: &str| counters.iter().any(|c| c[0] == name);
        assert_eq!(f["engine"] == "helio", named("swap_page_bytes"), "{f}");
    }
    for section in [
        "# helio-bench report",
        "## Engines",
        "## Targets",
        "## Every figure",
        "## Scaling",
        "## Engine counters",
    ] {
        assert!(md.contains(section), "report.md lacks {section}");
    }
    for png in ["throughput.png", "latency.png", "scaling.png"] {
        let bytes = std::fs::read(out.join(png)).unwrap_or_else(|e| panic!("{png}: {e}"));
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000, "{png} is not a plot");
        assert!(md.contains(png), "report.md does not show {png}");
    }
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0, "engine directories are removed");
}

/// fillbatch first on a fresh database of every engine compiled in (Helio and, in the default
/// build, fjall, sled, redb and LMDB), at one and two cores, with batches that do not divide the
/// keys: every key written once, puts counted, and every value read back checked by a full scan
/// (which must see exactly the keys written) and by point reads.
#[test]
fn fillbatch_fills_every_engine_in_atomic_batches_and_every_value_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, root) = (tmp.path().join("report"), tmp.path().join("data"));
    std::fs::create_dir_all(&root).unwrap();
    let args =
        ["--keys", "3000", "--batch", "64", "--cores", "1,2", "--workloads", "fillbatch,readseq,readrandom"];
    let report = run_with(&out, &root, &args);
    assert_eq!(report["spec"]["batch"], 64);
    let engines: Vec<&str> =
        report["spec"]["engines"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert!(engines.contains(&"helio"));
    assert!(!cfg!(feature = "fjall") || engines.contains(&"fjall"), "{engines:?}");
    assert!(!cfg!(feature = "sled") || engines.contains(&"sled"), "{engines:?}");
    let results = report["results"].as_array().unwrap();
    for engine in &engines {
        for cores in [1u64, 2] {
            let phase = |w: &str| {
                results
                    .iter()
                    .find(|f| f["engine"] == *engine && f["workload"] == w && f["cores"] == cores)
                    .unwrap_or_else(|| panic!("no result for {engine} {w} at {cores} cores"))
            };
            let fill = phase("fillbatch");
            assert_eq!(fill["ops"], 3000, "{engine}/{cores}: puts counted");
            assert_eq!(fill["entries_per_call"], 64, "{engine}/{cores}");
            assert_eq!(fill["user_write_bytes"], 3000 * (16 + 100), "{engine}/{cores}");
            assert!(fill["ops_per_sec"].as_f64().unwrap() > 0.0);
            assert_eq!(phase("readseq")["checked"], 3000, "{engine}/{cores}: the scan saw every key");
            assert_eq!(phase("readrandom")["checked"], 3000, "{engine}/{cores}: every read checked");
        }
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| fillbatch |") && md.contains("atomic batches of 64 puts"), "{md}");
}

/// `--rounds 3`: every phase carries three rounds' throughputs and reports the median one's.
#[test]
fn repeated_rounds_report_each_phase_from_its_median_round() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, root) = (tmp.path().join("report"), tmp.path().join("data"));
    std::fs::create_dir_all(&root).unwrap();
    let args =
        ["--keys", "2000", "--engines", "helio", "--workloads", "fillrandom,readrandom", "--cores", "1"];
    let report = run_with(&out, &root, &[&args[..], &["--rounds", "3"]].concat());
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "one merged result per phase");
    for f in results {
        let mut rounds: Vec<f64> =
            f["round_ops_per_sec"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert_eq!(rounds.len(), 3, "{f}");
        rounds.sort_by(f64::total_cmp);
        assert_eq!(f["ops_per_sec"].as_f64().unwrap(), rounds[1], "not the median round: {f}");
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("median of 3 rounds"), "report.md does not say the figures are medians");
}

#[test]
fn bad_options_are_refused_with_one_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_helio-bench")).args(["--key-size", "4"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--key-size"), "{err}");
    let out =
        Command::new(env!("CARGO_BIN_EXE_helio-bench")).args(["--workloads", "nosuch"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown workload"));
    let out = Command::new(env!("CARGO_BIN_EXE_helio-bench")).args(["--rounds", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rounds"));
    let out = Command::new(env!("CARGO_BIN_EXE_helio-bench")).args(["--batch", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--batch must be"));
}

#[test]
fn help_lists_fillbatch_and_its_batch_size() {
    let out = Command::new(env!("CARGO_BIN_EXE_helio-bench")).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("fillbatch") && help.contains("--batch <BATCH>"), "{help}");
}
