//! The chart: for the two runs with the neighbour (without and with feedback, side by side),
//! each model's use of its binding limit in the window ending at each second, split into the
//! neighbour's part and the job's, against the limit, with a red tick at every second in
//! which the provider answered the job with a 429. One SVG, drawn with `plotters`.

use std::path::Path;

use plotters::prelude::*;

use super::run::{ModelRun, Report, Workload};

const JOB: RGBColor = RGBColor(66, 133, 214);
const NEIGHBOUR: RGBColor = RGBColor(150, 150, 150);
const LIMIT: RGBColor = RGBColor(20, 20, 20);
const REFUSED: RGBColor = RGBColor(214, 39, 40);

/// Writes the chart of `off` and `on` (the same workloads, without and with feedback) to
/// `path`, creating its folder.
pub fn write(
    path: &Path,
    workloads: &[Workload],
    off: &Report,
    on: &Report,
) -> Result<(), Box<dyn core::error::Error>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let rows = workloads.len() as u32;
    let root = SVGBackend::new(path, (1500, 330 * rows + 60)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "llm_orchestrator: each model's use of its binding limit (60 s window), with a neighbour on the same key",
        ("sans-serif", 22),
    )?;
    // One time axis for every panel, so the two runs compare at a glance.
    let minutes = |m: &ModelRun| m.total.as_secs_f64() / 60.0;
    let end = off.models.iter().chain(&on.models).map(minutes).fold(0.0, f64::max).ceil() + 0.5;
    // One scale per row, so a model's two runs compare at a glance; head room for the legend.
    let top = |i: usize| {
        let peak = [off, on]
            .iter()
            .flat_map(|r| r.models[i].series.iter().map(|&(_, a, b)| (a + b, r.models[i].limit)))
            .map(|(n, limit)| 100.0 * n as f64 / limit as f64)
            .fold(100.0, f64::max);
        (peak * 1.45 / 20.0).ceil() * 20.0
    };
    let panels = root.split_evenly((rows as usize, 2));
    for (i, w) in workloads.iter().enumerate() {
        for (col, (report, how)) in [
            (off, "without feedback (headers ignored)"),
            (on, "with feedback (headers observed, 429s reported)"),
        ]
        .into_iter()
        .enumerate()
        {
            panel(&panels[2 * i + col], w, &report.models[i], how, (end, top(i)), i == 0)?;
        }
    }
    root.present()?;
    Ok(())
}

/// One model in one run.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    w: &Workload,
    m: &ModelRun,
    how: &str,
    (end, top): (f64, f64),
    legend: bool,
) -> Result<(), Box<dyn core::error::Error>>
where
    DB::ErrorType: 'static,
{
    let limit = m.limit as f64;
    let pct = |n: u64| 100.0 * n as f64 / limit;
    let caption = format!(
        "{} ({} {}) {how}: {} × 429, done in {:.1} min",
        w.name,
        w.binding.name(),
        m.limit,
        m.job_429s.len(),
        m.total.as_secs_f64() / 60.0
    );
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 15))
        .margin(8)
        .x_label_area_size(34)
        .y_label_area_size(48)
        .build_cartesian_2d(-1.0..end, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("minutes since the job started (the neighbour started at -1)")
        .y_desc("% of the limit")
        .light_line_style(WHITE.mix(0.0))
        .x_label_formatter(&|m| format!("{m:.0}"))
        .y_label_formatter(&|p| format!("{p:.0}"))
        .label_style(("sans-serif", 12))
        .draw()?;
    let at = |t: f64| t / 60.0;
    // Stacked: the whole (job on top of the neighbour), then the neighbour's part over it.
    chart
        .draw_series(AreaSeries::new(
            m.series.iter().map(|&(t, a, b)| (at(t), pct(a + b))),
            0.0,
            JOB.mix(0.45),
        ))?
        .label("the job")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], JOB.mix(0.45).filled()));
    chart
        .draw_series(AreaSeries::new(
            m.series.iter().map(|&(t, a, _)| (at(t), pct(a))),
            0.0,
            NEIGHBOUR.mix(0.6),
        ))?
        .label("the neighbour")
        .legend(|(x, y)| {
            Rectangle::new([(x, y - 5), (x + 14, y + 5)], NEIGHBOUR.mix(0.6).filled())
        });
    chart
        .draw_series(LineSeries::new([(-1.0, 100.0), (end, 100.0)], LIMIT.stroke_width(2)))?
        .label("the limit")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], LIMIT.stroke_width(2)));
    // One tick per second with any 429, reaching higher the more there were (up to 10).
    let mut seconds: Vec<(u64, u32)> = Vec::new();
    for t in &m.job_429s {
        let s = t.as_secs();
        match seconds.last_mut() {
            Some((last, n)) if *last == s => *n += 1,
            _ => seconds.push((s, 1)),
        }
    }
    chart
        .draw_series(seconds.iter().map(|&(s, n)| {
            let x = s as f64 / 60.0;
            let h = top * 0.04 * f64::from(n.min(10));
            PathElement::new([(x, 0.0), (x, h)], REFUSED.stroke_width(2))
        }))?
        .label("429s to the job (one tick per second)")
        .legend(|(x, y)| {
            PathElement::new([(x + 7, y - 6), (x + 7, y + 6)], REFUSED.stroke_width(2))
        });
    if !legend {
        return Ok(());
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    Ok(())
}
