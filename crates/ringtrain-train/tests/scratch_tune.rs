use burn::prelude::*;
use ringtrain_spec::{SpecFormat, parse_str};
use ringtrain_train::{Silent, TaskMetrics, TrainOptions, train};
use std::path::PathBuf;
#[test]
fn tune() {
    let extra = std::env::var("EXTRA").unwrap_or_default();
    let toml = format!(
        r#"
seed = 3
[model]
cell = "lstm"
hidden = 32
[task]
kind = "forecast"
horizon = 1
season = 12
[data]
path = "data/seasonal.csv"
features = ["demand", "temperature"]
targets = ["demand"]
window = 24
split = [0.7, 0.15, 0.15]
{extra}
[checkpoint]
dir = "/tmp/tune"
"#
    );
    let spec = parse_str(&toml, SpecFormat::Toml, "<test>", "t").unwrap();
    let opts = TrainOptions {
        base_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples"),
        resume: None,
        halt_after_steps: None,
        stop: None,
        device: Device::flex(),
    };
    let r = train(&spec, &opts, &mut Silent).unwrap();
    for h in r.history.iter().step_by(5) {
        eprintln!(
            "ep {} train {:.4} val {:?} {:?}",
            h.epoch, h.train_loss, h.val_loss, h.val_metrics
        );
    }
    for (name, rep) in [("val", r.val.unwrap()), ("test", r.test.unwrap())] {
        let TaskMetrics::Forecast(f) = &rep.metrics else {
            panic!()
        };
        eprintln!(
            "{name}: mse {:.3} snaive {:.3} naive {:.3} best-epoch {:?}",
            f.model.mse,
            f.seasonal_naive.as_ref().unwrap().mse,
            f.naive.mse,
            r.evaluated_epoch
        );
    }
}
