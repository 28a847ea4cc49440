//! `--plot FILE.png`: the training loss per step with per-epoch train/validation loss and, for
//! forecasts, predicted vs actual values on the test split (first target, first horizon step),
//! with the statistical baselines' forecasts of the same values.

use anyhow::{Context, anyhow};
use plotters::prelude::*;
use plotters::style::FontStyle;
use ringtrain_data::{Prepared, SplitName};
use ringtrain_spec::JobSpec;
use ringtrain_train::TrainReport;
use std::path::Path;

const WIDTH: u32 = 1200;

fn register_font() -> anyhow::Result<()> {
    plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| anyhow!("the bundled DejaVu font could not be loaded"))
}

/// The statistical baselines' forecasts of each test window's first output (first target,
/// first horizon step), in window order, for the forecast plot: the series is read again and the
/// baselines fitted on its training rows as the report's are. Empty for other tasks or when the
/// data cannot be read (the plot then shows the model alone).
pub(crate) fn baseline_lines(spec: &JobSpec, base_dir: &Path) -> Vec<(&'static str, Vec<f64>)> {
    let Ok(Prepared::Series(s)) = ringtrain_data::load(spec, base_dir) else {
        return Vec::new();
    };
    let idx: Vec<usize> = (0..s.len(SplitName::Test)).collect();
    let outputs = (s.horizon() * s.targets().len()).max(1);
    s.fit_stat_baselines()
        .into_iter()
        .filter_map(|(kind, fit)| {
            let f = s.stat_forecast(&fit.ok()?, SplitName::Test, &idx);
            Some((
                kind.name(),
                f.iter().step_by(outputs).map(|&v| f64::from(v)).collect(),
            ))
        })
        .collect()
}

/// Draws the training plots of `report` into a PNG at `path`, with `baselines` (named forecast
/// lines from [`baseline_lines`]) next to the model's test forecasts.
pub(crate) fn training(
    path: &Path,
    report: &TrainReport,
    step_losses: &[(u64, f64)],
    baselines: &[(&str, Vec<f64>)],
) -> anyhow::Result<()> {
    register_font()?;
    let forecasts = report
        .test
        .as_ref()
        .and_then(|t| t.forecasts.as_ref())
        .filter(|(p, _)| !p.is_empty());
    let height = if forecasts.is_some() { 900 } else { 450 };
    let root = BitMapBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = if forecasts.is_some() {
        let (a, b) = root.split_vertically(450);
        (a, Some(b))
    } else {
        (root.clone(), None)
    };
    draw_losses(&top, report, step_losses)?;
    if let (Some(area), Some((pred, actual))) = (bottom, forecasts) {
        let outputs = report
            .test
            .as_ref()
            .map_or(1, |t| pred.len() / t.samples.max(1))
            .max(1);
        // One point per test sample: its first output (first horizon step of the first target).
        let pred: Vec<f64> = pred
            .iter()
            .step_by(outputs)
            .map(|&v| f64::from(v))
            .collect();
        let actual: Vec<f64> = actual
            .iter()
            .step_by(outputs)
            .map(|&v| f64::from(v))
            .collect();
        draw_forecast(&area, &pred, &actual, baselines)?;
    }
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-9);
    (lo - pad, hi + pad)
}

fn draw_losses<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    report: &TrainReport,
    step_losses: &[(u64, f64)],
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let epoch_points: Vec<(f64, f64, Option<f64>)> = report
        .history
        .iter()
        .map(|r| (r.step as f64, r.train_loss, r.val_loss))
        .collect();
    let max_step = report.steps.max(1) as f64;
    let (lo, hi) = range(
        step_losses.iter().map(|&(_, l)| l).chain(
            epoch_points
                .iter()
                .flat_map(|&(_, t, v)| [Some(t), v])
                .flatten(),
        ),
    );
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{}: loss", report.name), ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..max_step, lo.max(0.0)..hi)?;
    chart
        .configure_mesh()
        .x_desc("optimizer step")
        .y_desc("loss")
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            step_losses.iter().map(|&(s, l)| (s as f64, l)),
            RGBColor(180, 180, 220).stroke_width(1),
        ))?
        .label("batch loss")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RGBColor(180, 180, 220)));
    chart
        .draw_series(LineSeries::new(
            epoch_points.iter().map(|&(s, t, _)| (s, t)),
            BLUE.stroke_width(2),
        ))?
        .label("train loss (epoch mean)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE));
    if epoch_points.iter().any(|p| p.2.is_some()) {
        chart
            .draw_series(LineSeries::new(
                epoch_points
                    .iter()
                    .filter_map(|&(s, _, v)| v.map(|v| (s, v))),
                RED.stroke_width(2),
            ))?
            .label("validation loss")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn draw_forecast<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    pred: &[f64],
    actual: &[f64],
    baselines: &[(&str, Vec<f64>)],
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    // Only baselines scored on the same windows are drawn.
    let baselines: Vec<&(&str, Vec<f64>)> = baselines
        .iter()
        .filter(|(_, v)| v.len() == pred.len())
        .collect();
    let (lo, hi) = range(
        pred.iter()
            .chain(actual)
            .chain(baselines.iter().flat_map(|(_, v)| v))
            .copied(),
    );
    let mut chart = ChartBuilder::on(area)
        .caption("test split: predicted vs actual", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..actual.len().max(1) as f64, lo..hi)?;
    chart
        .configure_mesh()
        .x_desc("test sample")
        .y_desc("value")
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            actual.iter().enumerate().map(|(i, &v)| (i as f64, v)),
            BLACK.stroke_width(2),
        ))?
        .label("actual")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK));
    chart
        .draw_series(LineSeries::new(
            pred.iter().enumerate().map(|(i, &v)| (i as f64, v)),
            RED.stroke_width(2),
        ))?
        .label("predicted")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED));
    for ((name, values), color) in baselines.iter().zip([BLUE, GREEN, MAGENTA, CYAN]) {
        chart
            .draw_series(LineSeries::new(
                values.iter().enumerate().map(|(i, &v)| (i as f64, v)),
                color.stroke_width(1),
            ))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// `ringtrain sweep status --plot DIR`: `objective.png` (the objective of every trial with a
/// value, by trial index, and the best so far) and one `param-<i>.png` per parameter (its value
/// against the objective; choices of a non-numeric parameter at their positions in order of
/// first appearance). Returns the files written.
pub(crate) fn sweep_plots(
    sweep: &ringtrain_proto::v1::Sweep,
    dir: &Path,
) -> anyhow::Result<Vec<std::path::PathBuf>> {
    register_font()?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let max = sweep.direction == "max";
    let valued: Vec<(&ringtrain_proto::v1::Trial, f64)> = sweep
        .trials
        .iter()
        .filter(|t| t.has_value && t.value.is_finite())
        .map(|t| (t, t.value))
        .collect();
    let mut written = vec![];
    let path = dir.join("objective.png");
    {
        let root = BitMapBackend::new(&path, (WIDTH, 450)).into_drawing_area();
        root.fill(&WHITE)?;
        let n = sweep.trials.len().max(1) as f64;
        let (lo, hi) = range(valued.iter().map(|v| v.1));
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{}: {} per trial", sweep.name, sweep.metric),
                ("sans-serif", 22),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(-0.5f64..n - 0.5, lo..hi)?;
        chart
            .configure_mesh()
            .x_desc("trial")
            .y_desc(sweep.metric.as_str())
            .draw()?;
        chart
            .draw_series(
                valued
                    .iter()
                    .map(|(t, v)| Circle::new((t.index as f64, *v), 4, BLUE.filled())),
            )?
            .label("trial")
            .legend(|(x, y)| Circle::new((x + 8, y), 4, BLUE.filled()));
        let mut best: Option<f64> = None;
        let mut line = vec![];
        for (t, v) in &valued {
            best = Some(match best {
                Some(b) if (max && b >= *v) || (!max && b <= *v) => b,
                _ => *v,
            });
            line.push((t.index as f64, best.unwrap_or(*v)));
        }
        chart
            .draw_series(LineSeries::new(line, RED.stroke_width(2)))?
            .label("best so far")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()
            .with_context(|| format!("writing {}", path.display()))?;
    }
    written.push(path);
    for (i, param) in sweep.params.iter().enumerate() {
        let mut categories: Vec<String> = vec![];
        let points: Vec<(f64, f64)> = valued
            .iter()
            .filter_map(|(t, v)| {
                let params: serde_json::Value = serde_json::from_str(&t.params_json).ok()?;
                let x = params.get(param)?;
                let x = match x.as_f64() {
                    Some(x) => x,
                    None => {
                        let key = x.to_string();
                        let pos = categories
                            .iter()
                            .position(|c| *c == key)
                            .unwrap_or_else(|| {
                                categories.push(key);
                                categories.len() - 1
                            });
                        pos as f64
                    }
                };
                Some((x, *v))
            })
            .collect();
        let path = dir.join(format!("param-{i}.png"));
        written.push(path.clone());
        let root = BitMapBackend::new(&path, (WIDTH / 2, 450)).into_drawing_area();
        root.fill(&WHITE)?;
        let (xlo, xhi) = range(points.iter().map(|p| p.0));
        let (lo, hi) = range(points.iter().map(|p| p.1));
        let desc = if categories.is_empty() {
            param.clone()
        } else {
            format!("{param}: {}", categories.join(", "))
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{} vs {}", sweep.metric, param), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(xlo..xhi, lo..hi)?;
        chart
            .configure_mesh()
            .x_desc(desc)
            .y_desc(sweep.metric.as_str())
            .draw()?;
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 4, BLUE.filled())))?;
        root.present()
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(written)
}
