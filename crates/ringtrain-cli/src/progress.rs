//! Training progress for people: a progress bar with epoch, step, loss, samples/s and ETA when
//! stderr is a terminal, structured log lines (about every 10 % of the run and per epoch)
//! otherwise, so CI logs and `--log-format json` stay readable. Quiet (`train --quiet`) shows
//! neither the bar nor the per-step and per-epoch lines; the start line, warnings and the final
//! report remain.

use indicatif::{ProgressBar, ProgressStyle};
use ringtrain_train::{EpochRecord, Observer, RunInfo, StepEvent};
use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

/// Renders trainer events.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    /// No per-step or per-epoch output at all.
    quiet: bool,
    started: Instant,
    samples: u64,
    last_log_step: u64,
    log_every: u64,
    /// Recent loss, exponentially smoothed for display.
    smooth_loss: Option<f64>,
    /// Per-step losses (for the loss curve plot).
    pub(crate) step_losses: Vec<(u64, f64)>,
}

impl Progress {
    pub(crate) fn new(quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30.cyan/blue}] {pos}/{len} steps {msg} ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar
        });
        Progress {
            bar,
            quiet,
            started: Instant::now(),
            samples: 0,
            last_log_step: 0,
            log_every: 1,
            smooth_loss: None,
            step_losses: Vec::new(),
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Observer for Progress {
    fn on_start(&mut self, info: &RunInfo) {
        tracing::info!(
            job = %info.name,
            params = info.params,
            layers = info.layers.len(),
            train = info.samples[0],
            val = info.samples[1],
            test = info.samples[2],
            steps_per_epoch = info.steps_per_epoch,
            total_steps = info.total_steps,
            start_step = info.start_step,
            checkpoints = %info.checkpoint_dir.display(),
            "training"
        );
        self.log_every = (info.total_steps / 10).max(1);
        self.last_log_step = info.start_step;
        self.started = Instant::now();
        if let Some(bar) = &self.bar {
            bar.set_length(info.total_steps);
            bar.set_position(info.start_step);
            bar.reset_eta();
        }
    }

    fn on_step(&mut self, e: &StepEvent) {
        self.samples += e.samples as u64;
        let loss = f64::from(e.stats.loss);
        self.step_losses.push((e.step, loss));
        let smooth = match self.smooth_loss {
            Some(s) => 0.9 * s + 0.1 * loss,
            None => loss,
        };
        self.smooth_loss = Some(smooth);
        let rate = self.samples as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        if let Some(bar) = &self.bar {
            bar.set_prefix(format!("epoch {}", e.epoch + 1));
            bar.set_message(format!("loss {smooth:.4} {rate:.0} samples/s"));
            bar.set_position(e.step);
        } else if !self.quiet
            && (e.step - self.last_log_step >= self.log_every || e.step == e.total_steps)
        {
            self.last_log_step = e.step;
            tracing::info!(
                epoch = e.epoch + 1,
                step = e.step,
                total = e.total_steps,
                loss = format_args!("{smooth:.5}"),
                lr = format_args!("{:.3e}", e.lr),
                samples_per_sec = format_args!("{rate:.0}"),
                "progress"
            );
        }
    }

    fn on_epoch(&mut self, r: &EpochRecord) {
        if self.quiet {
            return;
        }
        let metrics: Vec<String> = r
            .val_metrics
            .iter()
            .map(|(k, v)| format!("val_{k}={v:.4}"))
            .collect();
        let line = format!(
            "epoch {} step {}: train_loss={:.5}{}{}",
            r.epoch + 1,
            r.step,
            r.train_loss,
            r.val_loss
                .map(|v| format!(" val_loss={v:.5}"))
                .unwrap_or_default(),
            if metrics.is_empty() {
                String::new()
            } else {
                format!(" {}", metrics.join(" "))
            }
        );
        match &self.bar {
            Some(bar) => bar.println(line),
            None => tracing::info!("{line}"),
        }
    }

    fn on_checkpoint(&mut self, path: &Path) {
        tracing::debug!(path = %path.display(), "checkpoint written");
    }
}
