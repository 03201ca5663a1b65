//! What a run leaves behind: the table printed at the end, `report.md`, `report.json` (every
//! figure, for machines), and PNG plots of throughput, latency percentiles and scaling.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::plot;
use super::spec::Spec;
use super::workload::Figures;
use super::Result;

/// Everything a run measured, as `report.json` holds it.
#[derive(Serialize)]
pub struct Report {
    /// Format version of this file.
    pub format: u32,
    /// Seconds since the Unix epoch when the run started.
    pub started_unix: u64,
    /// The command line.
    pub command: String,
    /// The machine it ran on.
    pub machine: Machine,
    /// What was run.
    pub spec: Spec,
    /// How each engine was configured.
    pub engines: Vec<EngineConfig>,
    /// One entry per phase.
    pub results: Vec<Figures>,
    /// The targets Helio is held to, as ratios against peers of the same run.
    pub targets: Vec<Target>,
    /// Throughput at each core count against the smallest one.
    pub scaling: Vec<Scaling>,
}

/// The machine, as the report describes it.
#[derive(Serialize)]
pub struct Machine {
    /// CPUs this process may run on.
    pub cpus: usize,
    /// CPU model name.
    pub cpu_model: String,
    /// Physical memory in bytes.
    pub memory_bytes: u64,
    /// Kernel release.
    pub kernel: String,
}

impl Machine {
    /// Reads the machine's description from `/proc`.
    pub fn describe() -> Self {
        let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let memory_bytes = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024);
        Self {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            memory_bytes,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        }
    }
}

/// One engine's configuration in words.
#[derive(Serialize)]
pub struct EngineConfig {
    /// Engine name.
    pub engine: String,
    /// How it was opened and how each durability maps onto it.
    pub config: String,
}

/// One target: Helio's figure against a peer's, or against Helio at one core.
#[derive(Serialize)]
pub struct Target {
    /// What is compared.
    pub name: String,
    /// Cores of the phases compared.
    pub cores: usize,
    /// The measured ratio (or value).
    pub value: f64,
    /// The bound it must meet.
    pub bound: f64,
    /// True when the value must be at most the bound (write and space amplification).
    pub at_most: bool,
    /// Whether it was met.
    pub met: bool,
}

/// Scaling of one engine on one workload.
#[derive(Serialize)]
pub struct Scaling {
    /// Engine name.
    pub engine: String,
    /// Workload name.
    pub workload: String,
    /// Cores (threads, and Helio shards).
    pub cores: usize,
    /// Throughput at `cores`.
    pub ops_per_sec: f64,
    /// Throughput over the throughput at the smallest core count.
    pub speedup: f64,
    /// `speedup / (cores / smallest cores)`.
    pub efficiency: f64,
}

fn find<'a>(results: &'a [Figures], engine: &str, workload: &str, cores: usize) -> Option<&'a Figures> {
    results.iter().find(|f| f.engine == engine && f.workload == workload && f.cores == cores)
}

/// The targets that this run's engines and workloads allow computing.
pub fn targets(results: &[Figures], spec: &Spec) -> Vec<Target> {
    let mut out = Vec::new();
    let throughput = |w: &str, peer: &str, bound: f64, cores: usize, out: &mut Vec<Target>| {
        if let (Some(h), Some(p)) = (find(results, "helio", w, cores), find(results, peer, w, cores)) {
            let value = h.ops_per_sec / p.ops_per_sec;
            out.push(Target {
                name: format!("{w}: helio / {peer}"),
                cores,
                value,
                bound,
                at_most: false,
                met: value >= bound,
            });
        }
    };
    for &cores in &spec.cores {
        throughput("fillrandom", "rocksdb", 5.0, cores, &mut out);
        throughput("fillrandom", "fjall", 5.0, cores, &mut out);
        throughput("readrandom", "rocksdb", 8.0, cores, &mut out);
        throughput("readrandom", "lmdb", 1.5, cores, &mut out);
        throughput("seekrandom", "rocksdb", 3.0, cores, &mut out);
        throughput("seekrandom", "lmdb", 1.0, cores, &mut out);
        if let (Some(h), Some(r)) =
            (find(results, "helio", "overwrite", cores), find(results, "rocksdb", "overwrite", cores))
        {
            if let (Some(hw), Some(rw)) = (h.cumulative_write_amp, r.cumulative_write_amp) {
                let value = hw / rw;
                out.push(Target {
                    name: "write amplification after fill + overwrite: helio / rocksdb".into(),
                    cores,
                    value,
                    bound: 1.0 / 3.0,
                    at_most: true,
                    met: value <= 1.0 / 3.0,
                });
            }
        }
        if let Some(space) = find(results, "helio", "compact", cores).and_then(|f| f.space_amp) {
            out.push(Target {
                name: "helio space amplification after cleaning".into(),
                cores,
                value: space,
                bound: 1.3,
                at_most: true,
                met: space <= 1.3,
            });
        }
        let sync64 = "fillsync-t64";
        throughput(sync64, "rocksdb", 2.0, cores, &mut out);
    }
    if spec.cores.contains(&1) && spec.cores.contains(&2) {
        for w in ["fillrandom", "readrandom"] {
            if let (Some(one), Some(two)) = (find(results, "helio", w, 1), find(results, "helio", w, 2)) {
                let value = two.ops_per_sec / one.ops_per_sec;
                out.push(Target {
                    name: format!("{w}: helio 2 cores / 1 core"),
                    cores: 2,
                    value,
                    bound: 1.7,
                    at_most: false,
                    met: value >= 1.7,
                });
            }
        }
    }
    out
}

/// Speedup and efficiency of every engine and workload across the core counts.
pub fn scaling(results: &[Figures], spec: &Spec) -> Vec<Scaling> {
    let Some(&base) = spec.cores.iter().min() else { return Vec::new() };
    let mut out = Vec::new();
    for f in results.iter().filter(|f| spec.cores.len() > 1 && f.cores != base) {
        if let Some(b) = find(results, &f.engine, &f.workload, base) {
            let speedup = f.ops_per_sec / b.ops_per_sec;
            out.push(Scaling {
                engine: f.engine.clone(),
                workload: f.workload.clone(),
                cores: f.cores,
                ops_per_sec: f.ops_per_sec,
                speedup,
                efficiency: speedup / (f.cores as f64 / base as f64),
            });
        }
    }
    out
}

pub(super) fn engines_of(results: &[Figures]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for f in results {
        if !names.contains(&f.engine) {
            names.push(f.engine.clone());
        }
    }
    names
}

pub(super) fn workloads_of(results: &[Figures], cores: usize) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for f in results.iter().filter(|f| f.cores == cores) {
        if !names.contains(&f.workload) {
            names.push(f.workload.clone());
        }
    }
    names
}

/// Throughput per workload and engine at each core count, and the targets: what the terminal
/// shows at the end.
pub fn table(report: &Report) -> String {
    let mut s = String::new();
    let engines = engines_of(&report.results);
    for &cores in &report.spec.cores {
        let _ = writeln!(s, "\n{cores} core(s): operations per second{}", rounds_note(&report.spec));
        let _ = write!(s, "{:<20}", "workload");
        for e in &engines {
            let _ = write!(s, "{e:>13}");
        }
        s.push('\n');
        for (w, cells) in throughput_rows(report, &engines, cores, false) {
            let _ = write!(s, "{w:<20}");
            for cell in cells {
                let _ = write!(s, "{cell:>13}");
            }
            s.push('\n');
        }
    }
    if !report.targets.is_empty() {
        let _ = writeln!(s, "\ntargets");
        for t in &report.targets {
            let _ = writeln!(
                s,
                "  {:<62} {:>3} cores  {:>7.2}  ({} {:.2})  {}",
                t.name,
                t.cores,
                t.value,
                if t.at_most { "<=" } else { ">=" },
                t.bound,
                if t.met { "met" } else { "MISSED" }
            );
        }
    }
    s
}

/// Per workload at `cores`: its name and each engine's throughput (`-` where it did not run);
/// with `spread`, each cell also gives the range of the throughput over the rounds.
fn throughput_rows(
    report: &Report,
    engines: &[String],
    cores: usize,
    spread: bool,
) -> Vec<(String, Vec<String>)> {
    let cell = |f: &Figures| {
        let (lo, hi) =
            f.round_ops_per_sec.iter().fold((f64::INFINITY, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        if spread && f.round_ops_per_sec.len() > 1 {
            format!("{} ({}–{})", human(f.ops_per_sec), human(lo), human(hi))
        } else {
            human(f.ops_per_sec)
        }
    };
    workloads_of(&report.results, cores)
        .into_iter()
        .map(|w| {
            let cells = engines
                .iter()
                .map(|e| find(&report.results, e, &w, cores).map_or("-".into(), cell))
                .collect();
            (w, cells)
        })
        .collect()
}

/// How many rounds the figures are medians of, for headings (empty for one round).
fn rounds_note(spec: &Spec) -> String {
    if spec.rounds > 1 {
        format!(", median of {} rounds", spec.rounds)
    } else {
        String::new()
    }
}

pub(super) fn human(x: f64) -> String {
    match x {
        x if x >= 1e6 => format!("{:.2}M", x / 1e6),
        x if x >= 1e3 => format!("{:.1}k", x / 1e3),
        x => format!("{x:.1}"),
    }
}

fn opt(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.2}"))
}

/// The Markdown report; `plots` are file names in the same folder.
pub fn markdown(report: &Report, plots: &[String], plot_note: Option<&str>) -> String {
    let m = &report.machine;
    let spec = &report.spec;
    let mut s = String::new();
    let _ = writeln!(s, "# helio-bench report\n");
    let _ = writeln!(s, "`{}`\n", report.command);
    let _ = writeln!(
        s,
        "Machine: {} CPUs ({}), {:.1} GiB memory, Linux {}. Started at Unix time {}.\n",
        m.cpus,
        m.cpu_model,
        m.memory_bytes as f64 / (1u64 << 30) as f64,
        m.kernel,
        report.started_unix
    );
    let _ = writeln!(
        s,
        "{} keys of {} bytes, values of {} bytes; {} operations per read or mixed workload; \
         durability {:?}; YCSB keys {:?}; scans of {}; fillsync: {} writes from {:?} threads; \
         fillbatch: atomic batches of {} puts (ops/s counts puts, latency is of one batch); cores {:?}.\n",
        spec.keys,
        spec.key_size,
        spec.value_size,
        spec.ops,
        spec.durability,
        spec.distribution,
        spec.scan_len,
        spec.sync_ops,
        spec.sync_threads,
        spec.batch,
        spec.cores
    );
    let _ = writeln!(
        s,
        "Every value read back was checked (the key it belongs to, its length, its bytes); scans were \
         checked for order. Device bytes are the process's `write_bytes` from `/proc/self/io` (all \
         threads, including the engines' background work, and each phase's final flush). Peak memory \
         is `VmHWM` reset before each phase. Engines ran one after another, each in a fresh directory.\n"
    );
    if spec.rounds > 1 {
        let _ = writeln!(
            s,
            "The run was repeated {} times (every engine once per round); each phase's figures are \
             those of its median round, with the range of its throughput over the rounds in \
             parentheses.\n",
            spec.rounds
        );
    }
    let _ = writeln!(s, "## Engines\n");
    for e in &report.engines {
        let _ = writeln!(s, "- **{}**: {}", e.engine, e.config);
    }
    let engines = engines_of(&report.results);
    for &cores in &spec.cores {
        let _ = writeln!(s, "\n## {cores} core(s): throughput (operations/s{})\n", rounds_note(spec));
        let _ = write!(s, "| workload |");
        for e in &engines {
            let _ = write!(s, " {e} |");
        }
        let _ = write!(s, "\n| --- |");
        for _ in &engines {
            let _ = write!(s, " ---: |");
        }
        s.push('\n');
        for (w, cells) in throughput_rows(report, &engines, cores, true) {
            let _ = write!(s, "| {w} |");
            for cell in cells {
                let _ = write!(s, " {cell} |");
            }
            s.push('\n');
        }
    }
    let _ = writeln!(s, "\n## Targets\n");
    if report.targets.is_empty() {
        let _ = writeln!(s, "No target could be computed from this run's engines and workloads.");
    } else {
        let _ =
            writeln!(s, "| target | cores | measured | bound | met |\n| --- | ---: | ---: | ---: | --- |");
        for t in &report.targets {
            let _ = writeln!(
                s,
                "| {} | {} | {:.2} | {} {:.2} | {} |",
                t.name,
                t.cores,
                t.value,
                if t.at_most { "≤" } else { "≥" },
                t.bound,
                if t.met { "yes" } else { "**no**" }
            );
        }
    }
    if !report.scaling.is_empty() {
        let _ = writeln!(s, "\n## Scaling\n\n| engine | workload | cores | ops/s | speedup | efficiency |\n| --- | --- | ---: | ---: | ---: | ---: |");
        for x in &report.scaling {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.2} | {:.2} |",
                x.engine,
                x.workload,
                x.cores,
                human(x.ops_per_sec),
                x.speedup,
                x.efficiency
            );
        }
    }
    let _ = writeln!(s, "\n## Every figure\n");
    let _ = writeln!(
        s,
        "Latencies are of one call in microseconds (a call is one operation, except batched writes, \
         `fillbatch`'s atomic batches and `readseq`: entries per call in the `batch` column).\n"
    );
    let _ = writeln!(
        s,
        "| engine | cores | workload | threads | ops | ops/s | p50 | p99 | p99.9 | max | batch | WA | WA so far | disk MiB | space amp | peak RSS MiB | CPU s | checked |"
    );
    let _ = writeln!(s, "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for f in &report.results {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.0} | {} | {} | {} | {:.1} | {} | {:.0} | {:.2} | {} |",
            f.engine,
            f.cores,
            f.workload,
            f.threads,
            f.ops,
            human(f.ops_per_sec),
            f.p50_us,
            f.p99_us,
            f.p999_us,
            f.max_us,
            f.entries_per_call,
            opt(f.write_amp),
            opt(f.cumulative_write_amp),
            f.disk_bytes as f64 / (1u64 << 20) as f64,
            opt(f.space_amp),
            f.peak_rss_bytes as f64 / (1u64 << 20) as f64,
            f.cpu_seconds,
            f.checked
        );
    }
    engine_counters(&mut s, report);
    if !plots.is_empty() || plot_note.is_some() {
        let _ = writeln!(s, "\n## Plots\n");
        for p in plots {
            let _ = writeln!(s, "![{p}]({p})\n");
        }
        if let Some(note) = plot_note {
            let _ = writeln!(s, "{note}");
        }
    }
    s
}

/// Writes `report.json`, the plots and `report.md` into `out`; returns the files written.
pub fn write(report: &Report, out: &Path) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(out)?;
    let mut written = Vec::new();
    let json = out.join("report.json");
    fs::write(&json, serde_json::to_string_pretty(report)?)?;
    written.push(json);
    let (plots, note) = match plot::register_font() {
        Ok(()) => (plot::plot_all(report, out)?, None),
        Err(e) => (Vec::new(), Some(format!("Plots skipped: {e}"))),
    };
    written.extend(plots.iter().map(|p| out.join(p)));
    let md = out.join("report.md");
    fs::write(&md, markdown(report, &plots, note.as_deref()))?;
    written.push(md);
    Ok(written)
}

/// The section of the engines' own counters, each phase's increase (only engines that keep
/// some: Helio's say where its page records' bytes came from and how long writers waited).
fn engine_counters(s: &mut String, report: &Report) {
    let with: Vec<&Figures> = report.results.iter().filter(|f| !f.engine_counters.is_empty()).collect();
    if with.is_empty() {
        return;
    }
    let _ = writeln!(s, "\n## Engine counters\n");
    let _ = writeln!(s, "Each phase's increase; bytes in MB (10^6), waits in seconds.\n");
    let _ = writeln!(s, "| engine | cores | workload | counters |\n| --- | ---: | --- | --- |");
    for f in with {
        let counters: Vec<String> = f.engine_counters.iter().map(|(name, v)| counter(name, *v)).collect();
        let _ = writeln!(s, "| {} | {} | {} | {} |", f.engine, f.cores, f.workload, counters.join(", "));
    }
}

/// `name value`, bytes in MB and microseconds in seconds.
fn counter(name: &str, value: u64) -> String {
    if let Some(stem) = name.strip_suffix("_micros") {
        format!("{stem} {:.2} s", value as f64 / 1e6)
    } else if name.ends_with("_bytes") || name.contains("_bytes_") {
        format!("{name} {:.1} MB", value as f64 / 1e6)
    } else {
        format!("{name} {value}")
    }
}
