//! The report's PNG plots: throughput per engine and workload, latency percentiles, and the
//! scaling curve (plotters' bitmap backend, text drawn with a system TrueType font).

use std::fs;
use std::path::Path;

use plotters::prelude::*;

use super::report::{engines_of, human, workloads_of, Report};
use super::workload::Figures;
use super::Result;

/// Fonts tried for the plots' text, in order (Debian's `fonts-dejavu-core` provides the first).
const FONTS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

pub(super) fn register_font() -> std::result::Result<(), String> {
    static DONE: std::sync::OnceLock<std::result::Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let bytes = FONTS.iter().find_map(|p| fs::read(p).ok()).ok_or_else(|| {
            format!("no TrueType font found (looked for {}; install fonts-dejavu-core)", FONTS[0])
        })?;
        plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into_boxed_slice()))
            .map_err(|_| "the font file could not be parsed".to_string())
    })
    .clone()
}

pub(super) fn plot_all(report: &Report, out: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    let cores = *report.spec.cores.iter().max().expect("at least one core count");
    let results: Vec<&Figures> = report.results.iter().filter(|f| f.cores == cores).collect();
    let engines = engines_of(&report.results);
    let workloads = workloads_of(&report.results, cores);
    let name = "throughput.png";
    let path = out.join(name);
    let root = BitMapBackend::new(&path, (1800, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    bars(
        &root,
        &format!("Throughput at {cores} core(s), operations/s (log scale)"),
        &results,
        &engines,
        &workloads,
        |f| f.ops_per_sec,
    )?;
    root.present()?;
    files.push(name.to_string());

    let name = "latency.png";
    let path = out.join(name);
    let root = BitMapBackend::new(&path, (1800, 1500)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((3, 1));
    let metrics: [(&str, Metric); 3] =
        [("p50", |f| f.p50_us), ("p99", |f| f.p99_us), ("p99.9", |f| f.p999_us)];
    for (panel, (label, metric)) in panels.iter().zip(metrics) {
        let title = format!("{label} latency of one call at {cores} core(s), microseconds (log scale)");
        bars(panel, &title, &results, &engines, &workloads, metric)?;
    }
    root.present()?;
    files.push(name.to_string());

    if report.spec.cores.len() > 1 {
        let name = "scaling.png";
        scaling_plot(report, &engines, &out.join(name))?;
        files.push(name.to_string());
    }
    Ok(files)
}

/// One figure of a phase, for a plot.
type Metric = fn(&Figures) -> f64;

fn color(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 6] = [
        RGBColor(214, 39, 40),
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
    ];
    COLORS[i % COLORS.len()]
}

/// A grouped bar chart: one group per workload, one bar per engine, log-scaled values.
fn bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    results: &[&Figures],
    engines: &[String],
    workloads: &[String],
    metric: impl Fn(&Figures) -> f64,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let values: Vec<f64> = results.iter().map(|f| metric(f)).filter(|v| *v > 0.0).collect();
    let (lo, hi) = values.iter().fold((f64::MAX, 0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if values.is_empty() { (0.1, 10.0) } else { (lo / 2.0, hi * 2.0) };
    // Group `w` spans `w - 0.5 .. w + 0.5`, so the axis ticks at whole numbers fall on the
    // groups' centres and carry the workload names.
    let slot = 1.0 / (engines.len() + 1) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5f64..workloads.len() as f64 - 0.5, (lo..hi).log_scale())?;
    let label_at = |x: &f64| {
        let w = x.round();
        if (x - w).abs() < 1e-6 && w >= 0.0 {
            workloads.get(w as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(workloads.len())
        .x_label_formatter(&label_at)
        .y_label_formatter(&|y| human(*y))
        .label_style(("sans-serif", 13))
        .draw()?;
    for (e, engine) in engines.iter().enumerate() {
        let rects: Vec<_> = workloads
            .iter()
            .enumerate()
            .filter_map(|(w, workload)| {
                let f = results.iter().find(|f| &f.engine == engine && &f.workload == workload)?;
                let v = metric(f);
                (v > 0.0).then(|| {
                    let x = w as f64 - 0.5 + slot * (e as f64 + 0.5);
                    Rectangle::new([(x + 0.05 * slot, lo), (x + 0.95 * slot, v)], color(e).filled())
                })
            })
            .collect();
        chart
            .draw_series(rects)?
            .label(engine.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], color(e).filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    Ok(())
}

/// Speedup over the smallest core count, per engine, for the fills and point reads.
fn scaling_plot(report: &Report, engines: &[String], path: &Path) -> Result<()> {
    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let base = *report.spec.cores.iter().min().expect("core counts") as f64;
    let top = *report.spec.cores.iter().max().expect("core counts") as f64;
    let ideal = top / base;
    const PLOTTED: [&str; 2] = ["fillrandom", "readrandom"];
    let highest = report
        .scaling
        .iter()
        .filter(|s| PLOTTED.contains(&s.workload.as_str()))
        .map(|s| s.speedup)
        .fold(ideal, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption("Speedup over the smallest core count (black: linear)", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(base..top, 0f64..highest * 1.1)?;
    chart.configure_mesh().x_desc("cores").y_desc("speedup").label_style(("sans-serif", 14)).draw()?;
    chart.draw_series(LineSeries::new([(base, 1.0), (top, ideal)], BLACK.stroke_width(1)))?;
    for (e, engine) in engines.iter().enumerate() {
        for (k, workload) in PLOTTED.into_iter().enumerate() {
            let mut points = vec![(base, 1.0)];
            points.extend(
                report
                    .scaling
                    .iter()
                    .filter(|s| &s.engine == engine && s.workload == workload)
                    .map(|s| (s.cores as f64, s.speedup)),
            );
            if points.len() < 2 {
                continue;
            }
            let style = if k == 0 { color(e).stroke_width(3) } else { color(e).stroke_width(1) };
            chart.draw_series(LineSeries::new(points, style))?.label(format!("{engine} {workload}")).legend(
                move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color(e).stroke_width(if k == 0 { 3 } else { 1 }))
                },
            );
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}
