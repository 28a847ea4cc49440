//! Writing a point of the search space into the base job spec: each parameter's value is set at
//! its dotted field path in the base spec's TOML tree (creating tables that are absent), the
//! trial's name is set, and the result goes through the job spec's own parsing and validation,
//! so a trial spec is exactly as valid as a hand-written one.

use crate::error::ApplyError;
use crate::types::{Point, PointDisplay, SweepSpec};
use ringtrain_spec::{JobSpec, SpecFormat};

/// One segment of a field path: a key, optionally indexing an array (`conv[0]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    pub key: String,
    pub index: Option<usize>,
}

/// Splits `model.conv[0].channels` into segments; `Err` says what is wrong with the path.
pub(crate) fn parse_path(path: &str) -> Result<Vec<Segment>, String> {
    if path.is_empty() {
        return Err("must not be empty".into());
    }
    path.split('.')
        .map(|part| {
            let (key, index) = match part.split_once('[') {
                Some((key, rest)) => {
                    let digits = rest
                        .strip_suffix(']')
                        .ok_or_else(|| format!("segment `{part}`: `[` without a closing `]`"))?;
                    let index = digits
                        .parse::<usize>()
                        .map_err(|_| format!("segment `{part}`: index must be a number"))?;
                    (key, Some(index))
                }
                None => (part, None),
            };
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "segment `{part}`: keys use only letters, digits and '_'"
                ));
            }
            Ok(Segment {
                key: key.to_string(),
                index,
            })
        })
        .collect()
}

/// Sets `value` at `path` in `table`, creating absent tables on the way. Crossing a value that
/// is not a table, indexing something that is not an array or past its end, or replacing a
/// whole table is an error (a parameter sets one value, never a section).
pub(crate) fn set_path(
    table: &mut toml::Table,
    path: &[Segment],
    value: toml::Value,
) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("must not be empty")?;
    let mut here = table;
    let mut walked = String::new();
    for seg in parents {
        let slot = here
            .entry(seg.key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let slot = index_into(slot, seg, &walked)?;
        walked = join(&walked, seg);
        here = match slot {
            toml::Value::Table(t) => t,
            other => {
                return Err(format!(
                    "`{walked}` is not a table in the base job spec (it holds a {})",
                    other.type_str()
                ));
            }
        };
    }
    match last.index {
        None => {
            if let Some(toml::Value::Table(_)) = here.get(&last.key) {
                return Err(format!(
                    "`{}` is a table in the base job spec; a parameter sets one value",
                    join(&walked, last)
                ));
            }
            here.insert(last.key.clone(), value);
        }
        Some(_) => {
            let slot = here.get_mut(&last.key).ok_or_else(|| {
                format!(
                    "`{}` is absent in the base job spec (an index needs an array)",
                    join(
                        &walked,
                        &Segment {
                            key: last.key.clone(),
                            index: None
                        }
                    )
                )
            })?;
            *index_into(slot, last, &walked)? = value;
        }
    }
    Ok(())
}

fn index_into<'a>(
    slot: &'a mut toml::Value,
    seg: &Segment,
    walked: &str,
) -> Result<&'a mut toml::Value, String> {
    let Some(i) = seg.index else {
        return Ok(slot);
    };
    let name = join(
        walked,
        &Segment {
            key: seg.key.clone(),
            index: None,
        },
    );
    match slot {
        toml::Value::Array(items) => {
            let len = items.len();
            items.get_mut(i).ok_or_else(|| {
                format!("`{name}` has {len} entries in the base job spec, so [{i}] is past its end")
            })
        }
        other => Err(format!(
            "`{name}` is not an array in the base job spec (it holds a {})",
            other.type_str()
        )),
    }
}

fn join(walked: &str, seg: &Segment) -> String {
    let mut s = if walked.is_empty() {
        seg.key.clone()
    } else {
        format!("{walked}.{}", seg.key)
    };
    if let Some(i) = seg.index {
        s.push_str(&format!("[{i}]"));
    }
    s
}

/// The name of trial `index` of sweep `sweep`: `<sweep>-t<index>`.
pub fn trial_name(sweep: &str, index: u64) -> String {
    format!("{sweep}-t{index}")
}

/// A trial's job spec: the base spec with `point`'s values and the name `<sweep>-t<index>`,
/// as TOML text (what is submitted as the trial's job) and validated.
///
/// # Errors
/// [`ApplyError::Path`] when a parameter's path cannot be set in the base spec;
/// [`ApplyError::Spec`] when the resulting job spec is invalid, naming every parameter's value.
pub fn trial_spec(
    sweep: &SweepSpec,
    index: u64,
    point: &Point,
) -> Result<(String, JobSpec), ApplyError> {
    let mut table = sweep.base.clone();
    let name = trial_name(&sweep.name, index);
    table.insert("name".into(), toml::Value::String(name.clone()));
    for (i, (param, value)) in sweep.params.iter().zip(&point.0).enumerate() {
        let path_err = |message: String| ApplyError::Path {
            index: i,
            path: param.path.clone(),
            message,
        };
        let segments = parse_path(&param.path).map_err(path_err)?;
        set_path(&mut table, &segments, param.dist.to_toml(value)).map_err(path_err)?;
    }
    let spec_err = |error| ApplyError::Spec {
        point: PointDisplay {
            params: &sweep.params,
            point,
        }
        .to_string(),
        error,
    };
    // The table came from a parsed document, so it always serializes; a failure is reported as
    // a spec error rather than a panic all the same.
    let text = toml::to_string(&table).map_err(|e| {
        spec_err(ringtrain_spec::SpecError::Syntax {
            origin: format!("<trial {index}>"),
            path: "(document)".into(),
            message: e.to_string(),
        })
    })?;
    let spec =
        ringtrain_spec::parse_str(&text, SpecFormat::Toml, &format!("<trial {index}>"), &name)
            .map_err(spec_err)?;
    Ok((text, spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(doc: &str, path: &str, v: toml::Value) -> Result<toml::Table, String> {
        let mut t: toml::Table = doc.parse().unwrap();
        set_path(&mut t, &parse_path(path)?, v)?;
        Ok(t)
    }

    #[test]
    fn paths_set_values_and_create_tables() {
        let t = set("[train]\nepochs = 3\n", "train.optimizer.lr", 0.1.into()).unwrap();
        assert_eq!(t["train"]["optimizer"]["lr"].as_float(), Some(0.1));
        assert_eq!(t["train"]["epochs"].as_integer(), Some(3));
        let t = set(
            "[[model.conv]]\nchannels = 4\n",
            "model.conv[0].channels",
            8.into(),
        )
        .unwrap();
        assert_eq!(t["model"]["conv"][0]["channels"].as_integer(), Some(8));
    }

    #[test]
    fn bad_paths_are_refused_with_a_reason() {
        let e = set(
            "[[model.conv]]\nchannels = 4\n",
            "model.conv[3].channels",
            8.into(),
        );
        assert!(e.unwrap_err().contains("1 entries"), "past the end");
        let e = set("[train]\nepochs = 3\n", "train.epochs.x", 1.into()).unwrap_err();
        assert!(e.contains("`train.epochs` is not a table"), "{e}");
        let e = set("[train]\nepochs = 3\n", "train", 1.into()).unwrap_err();
        assert!(e.contains("is a table"), "{e}");
        assert!(parse_path("a..b").is_err());
        assert!(parse_path("a[x]").is_err());
        assert!(parse_path("a[1").is_err());
        assert!(parse_path("a-b").is_err());
    }
}
