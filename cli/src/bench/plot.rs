//! `--plot FILE.svg`: every counted run of every series as a dot, side by
//! side, with the median as a bar, on a logarithmic time axis (a container
//! start and a VM boot differ by orders of magnitude). SVG only: PNG would
//! need plotters' bitmap encoder and the `image` crate, left out to keep
//! the CLI's build small.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::combinators::IntoLogRange;
use plotters::prelude::*;

use super::report::Report;

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Refuse a file name we cannot write before spending minutes measuring.
pub fn check_path(p: &Path) -> Result<()> {
    match p.extension().and_then(|e| e.to_str()) {
        Some("svg") => Ok(()),
        Some("png") => bail!(
            "--plot {}: PNG is not built in (plotters' bitmap encoder is left out); write an .svg",
            p.display()
        ),
        _ => bail!("--plot {}: the file name must end in .svg", p.display()),
    }
}

/// A deterministic spread of the dots around their column, so equal values
/// do not hide each other.
fn jitter(i: usize) -> f64 {
    ((i * 37) % 17) as f64 / 17.0 * 0.5 - 0.25
}

pub fn draw(r: &Report, path: &Path) -> Result<()> {
    check_path(path)?;
    let shown: Vec<_> = r.series.iter().filter(|d| !d.runs_ms.is_empty()).collect();
    if shown.is_empty() {
        bail!("--plot {}: no successful run to draw", path.display());
    }
    let all = shown.iter().flat_map(|d| d.runs_ms.iter().copied());
    let (lo, hi) = all.fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)));
    let (lo, hi) = ((lo * 0.8).max(0.01), hi * 1.25);
    let width = (180 * shown.len() as u32 + 160).max(640);
    let area = SVGBackend::new(path, (width, 560)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| anyhow!("draw {}: {e}", path.display());
    area.fill(&WHITE).map_err(|e| err(&e))?;
    let title = format!(
        "corral bench startup ({} runs each; {}, {} CPUs)",
        r.runs, r.host.kernel, r.host.cpus
    );
    let mut chart = ChartBuilder::on(&area)
        .caption(title, ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(60)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..(shown.len() as f64 - 0.5), (lo..hi).log_scale())
        .map_err(|e| err(&e))?;
    let labels: Vec<String> = shown
        .iter()
        .map(|d| format!("{} {}", d.series.name, d.series.mode))
        .collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(shown.len())
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() > 0.01 || i < 0.0 {
                return String::new();
            }
            labels.get(i as usize).cloned().unwrap_or_default()
        })
        .y_desc("start time, ms (log scale)")
        .draw()
        .map_err(|e| err(&e))?;
    for (i, d) in shown.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let x = i as f64;
        chart
            .draw_series(
                d.runs_ms
                    .iter()
                    .enumerate()
                    .map(|(k, v)| Circle::new((x + jitter(k), *v), 3, color.mix(0.6).filled())),
            )
            .map_err(|e| err(&e))?;
        if let Some(s) = d.summary() {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x - 0.35, s.median), (x + 0.35, s.median)],
                    color.stroke_width(3),
                )))
                .map_err(|e| err(&e))?;
        }
    }
    area.present().map_err(|e| err(&e))?;
    std::fs::metadata(path).with_context(|| format!("{} was not written", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_svg() {
        assert!(check_path(Path::new("a.svg")).is_ok());
        assert!(check_path(Path::new("a.png"))
            .unwrap_err()
            .to_string()
            .contains("PNG"));
        assert!(check_path(Path::new("a")).is_err());
    }

    #[test]
    fn jitter_stays_in_the_column() {
        assert!((0..100).all(|i| jitter(i).abs() <= 0.25));
    }
}
