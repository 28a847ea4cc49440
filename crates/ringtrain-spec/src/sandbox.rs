//! The job sandbox of cluster services: a spec may read data only under the configured data
//! roots and write checkpoints only under the checkpoint roots. [`check`] is pure and lexical
//! (`.` and `..` are folded without touching the file system), which is what the coordinator can
//! do at submit time; a worker passes a `resolve` function to [`check_with`] that follows
//! symlinks on its own disk, so a link inside a root that points outside is refused too.
//! `ringtrain train` (one process, the user's own machine) does not use this module.

use crate::types::JobSpec;
use std::path::{Component, Path, PathBuf};

/// Directories a cluster job may use. An empty list means no restriction for that kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roots {
    /// Directories `data.path` must lie under (`--data-root`, repeatable).
    pub data: Vec<PathBuf>,
    /// Directories `checkpoint.dir` must lie under (`--checkpoint-root`, repeatable).
    pub checkpoint: Vec<PathBuf>,
}

impl Roots {
    /// True when neither kind is restricted.
    pub fn is_unrestricted(&self) -> bool {
        self.data.is_empty() && self.checkpoint.is_empty()
    }
}

/// Why a spec does not fit the sandbox. Each names the spec field (`data.path`,
/// `checkpoint.dir`, `init_from.checkpoint`) or `base_dir`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    /// A path that must be absolute is not.
    #[error("{field} = {value:?}: must be an absolute path")]
    NotAbsolute {
        /// `base_dir` or a root.
        field: String,
        /// The path as given (bounded).
        value: String,
    },
    /// A resolved path lies outside every allowed root.
    #[error(
        "{field} = {value:?} resolves to {resolved:?}, outside the allowed {kind} roots [{roots}]"
    )]
    Outside {
        /// `data.path` or `checkpoint.dir`.
        field: String,
        /// The path as written in the spec (bounded).
        value: String,
        /// Where it resolves (bounded).
        resolved: String,
        /// `data`, `checkpoint`, or `data or checkpoint` (for `init_from.checkpoint`).
        kind: &'static str,
        /// The roots, comma separated.
        roots: String,
    },
}

/// Folds `.` and `..` out of an absolute path without touching the file system (`/..` stays
/// `/`). Relative paths are returned folded the same way, with leading `..` kept.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    let mut depth = 0usize;
    for c in path.components() {
        match c {
            Component::Prefix(p) => out.push(p.as_os_str()),
            Component::RootDir => out.push(Component::RootDir.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth > 0 {
                    out.pop();
                    depth -= 1;
                } else if !out.has_root() {
                    out.push("..");
                }
            }
            Component::Normal(n) => {
                out.push(n);
                depth += 1;
            }
        }
    }
    out
}

/// True when the normalized path names no directory below the file-system root or the
/// base directory (`/`, `/..`, `.`, `a/..`): never a place to write a run into.
pub fn is_root_like(path: &Path) -> bool {
    !normalize(path)
        .components()
        .any(|c| matches!(c, Component::Normal(_)))
}

/// Lexical check of a validated spec (paths not yet resolved) against `roots`, with relative
/// paths joined to `base_dir`.
///
/// # Errors
/// [`SandboxError::NotAbsolute`] for a relative `base_dir` (when relative paths must be
/// resolved against it) or root; [`SandboxError::Outside`] naming `data.path` or
/// `checkpoint.dir` when it resolves outside its roots.
pub fn check(spec: &JobSpec, base_dir: &Path, roots: &Roots) -> Result<(), SandboxError> {
    check_with(spec, base_dir, roots, &|p: &Path| p.to_path_buf())
}

/// As [`check`], but every resolved path and root also goes through `resolve` after the lexical
/// fold (a worker passes one that canonicalizes the longest existing prefix, so symlinks are
/// followed).
///
/// # Errors
/// As [`check`].
pub fn check_with(
    spec: &JobSpec,
    base_dir: &Path,
    roots: &Roots,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<(), SandboxError> {
    let data = spec.data.path.to_string_lossy();
    if !roots.data.is_empty() && !data.starts_with("builtin:") {
        inside(
            "data.path",
            &spec.data.path,
            base_dir,
            &roots.data,
            "data",
            resolve,
        )?;
    }
    if !roots.checkpoint.is_empty() {
        inside(
            "checkpoint.dir",
            &spec.checkpoint.dir,
            base_dir,
            &roots.checkpoint,
            "checkpoint",
            resolve,
        )?;
    }
    // `init_from.checkpoint` is read like data: confined when data reads are, and allowed
    // under a checkpoint root too, where a pretraining job wrote it.
    if let Some(init) = &spec.init_from
        && !roots.data.is_empty()
    {
        let readable: Vec<PathBuf> = roots
            .data
            .iter()
            .chain(&roots.checkpoint)
            .cloned()
            .collect();
        inside(
            "init_from.checkpoint",
            &init.checkpoint,
            base_dir,
            &readable,
            "data or checkpoint",
            resolve,
        )?;
    }
    Ok(())
}

fn inside(
    field: &str,
    path: &Path,
    base_dir: &Path,
    roots: &[PathBuf],
    kind: &'static str,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<(), SandboxError> {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else if base_dir.is_absolute() {
        base_dir.join(path)
    } else {
        return Err(SandboxError::NotAbsolute {
            field: "base_dir".into(),
            value: bounded(&base_dir.to_string_lossy()),
        });
    };
    let resolved = resolve(&normalize(&joined));
    let mut names = Vec::with_capacity(roots.len());
    for root in roots {
        if !root.is_absolute() {
            return Err(SandboxError::NotAbsolute {
                field: format!("--{kind}-root"),
                value: bounded(&root.to_string_lossy()),
            });
        }
        let root = resolve(&normalize(root));
        if resolved.starts_with(&root) {
            return Ok(());
        }
        names.push(root.display().to_string());
    }
    Err(SandboxError::Outside {
        field: field.into(),
        value: bounded(&path.to_string_lossy()),
        resolved: bounded(&resolved.to_string_lossy()),
        kind,
        roots: names.join(", "),
    })
}

/// At most 200 characters of a user-given path for an error message.
fn bounded(s: &str) -> String {
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SpecFormat, parse_str};

    fn spec(data: &str, ckpt: &str) -> JobSpec {
        let text = format!(
            "[model]\ncell = \"lstm\"\n[task]\nkind = \"forecast\"\n[data]\npath = {data:?}\n\
             format = \"csv\"\nfeatures = [\"y\"]\ntargets = [\"y\"]\nwindow = 4\n[checkpoint]\ndir = {ckpt:?}\n"
        );
        parse_str(&text, SpecFormat::Toml, "<t>", "t").unwrap_or_else(|e| panic!("{e}"))
    }

    fn roots() -> Roots {
        Roots {
            data: vec!["/srv/data".into(), "/mnt/shared/../shared2".into()],
            checkpoint: vec!["/srv/runs".into()],
        }
    }

    /// (data.path, checkpoint.dir, base_dir, expected error substring or "" for accepted)
    const CASES: &[(&str, &str, &str, &str)] = &[
        (
            "a.csv",
            "runs/x",
            "/srv/data",
            "checkpoint.dir = \"runs/x\" resolves to \"/srv/data/runs/x\"",
        ),
        ("a.csv", "/srv/runs/x", "/srv/data", ""),
        ("sub/./a.csv", "/srv/runs/x/../y", "/srv/data", ""),
        ("builtin:air-passengers", "/srv/runs/x", "/anywhere", ""),
        (
            "/etc/passwd",
            "/srv/runs/x",
            "/srv/data",
            "data.path = \"/etc/passwd\" resolves to \"/etc/passwd\", outside the allowed data roots",
        ),
        (
            "../../../etc/passwd",
            "/srv/runs/x",
            "/srv/data",
            "data.path = \"../../../etc/passwd\" resolves to \"/etc/passwd\"",
        ),
        (
            "../data-other/a.csv",
            "/srv/runs/x",
            "/srv/data",
            "outside the allowed data roots [/srv/data, /mnt/shared2]",
        ),
        (
            "/srv/database.csv",
            "/srv/runs/x",
            "/srv/data",
            "data.path = \"/srv/database.csv\"",
        ),
        ("/mnt/shared2/a.csv", "/srv/runs/x", "/", ""),
        (
            "/mnt/shared/a.csv",
            "/srv/runs/x",
            "/",
            "data.path = \"/mnt/shared/a.csv\"",
        ),
        (
            "a.csv",
            "/srv/runs/x",
            "relative",
            "base_dir = \"relative\": must be an absolute path",
        ),
        (
            "a.csv",
            "/srv/runs/../../etc",
            "/srv/data",
            "checkpoint.dir = \"/srv/runs/../../etc\" resolves to \"/etc\"",
        ),
        (
            "a.csv",
            "/srv/runsx",
            "/srv/data",
            "checkpoint.dir = \"/srv/runsx\"",
        ),
        (
            "a.csv",
            "/tmp/x",
            "/srv/data",
            "outside the allowed checkpoint roots [/srv/runs]",
        ),
    ];

    #[test]
    fn lexical_sandbox_corpus() {
        let mut failures = Vec::new();
        for (data, ckpt, base, expect) in CASES {
            let got = check(&spec(data, ckpt), Path::new(base), &roots());
            match (got, expect.is_empty()) {
                (Ok(()), true) => {}
                (Err(e), false) if e.to_string().contains(expect) => {}
                (got, _) => failures.push(format!(
                    "{data} | {ckpt} | {base}: {got:?}, want {expect:?}"
                )),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn init_from_is_read_only_inside_a_data_or_checkpoint_root() {
        let with = |init: &str| {
            let mut s = spec("a.csv", "/srv/runs/x");
            s.init_from = with_init(init);
            check(&s, Path::new("/srv/data"), &roots())
        };
        assert!(with("/srv/runs/lm/best.ckpt").is_ok());
        assert!(with("pretrained/lm.ckpt").is_ok());
        let e = with("../../etc/lm.ckpt").unwrap_err().to_string();
        assert!(
            e.contains("init_from.checkpoint = \"../../etc/lm.ckpt\" resolves to \"/etc/lm.ckpt\", outside the allowed data or checkpoint roots"),
            "{e}"
        );
        // Unrestricted reads (no data root) leave it unrestricted too.
        let mut s = spec("a.csv", "/srv/runs/x");
        s.init_from = with_init("/etc/lm.ckpt");
        let only_ckpt = Roots {
            data: Vec::new(),
            checkpoint: vec!["/srv/runs".into()],
        };
        assert!(check(&s, Path::new("/srv"), &only_ckpt).is_ok());
    }

    fn with_init(path: &str) -> Option<crate::types::InitFrom> {
        Some(crate::types::InitFrom {
            checkpoint: path.into(),
            format: crate::types::InitFormat::Ringtrain,
            layers: None,
            freeze_epochs: 0,
            lr_scale: 1.0,
        })
    }

    #[test]
    fn unrestricted_roots_accept_anything_and_normalize_folds() {
        let free = Roots::default();
        assert!(free.is_unrestricted());
        assert!(check(&spec("/etc/passwd", "/tmp/x"), Path::new("/"), &free).is_ok());
        assert_eq!(
            normalize(Path::new("/a/./b/../../../c")),
            PathBuf::from("/c")
        );
        assert_eq!(normalize(Path::new("a/../../b")), PathBuf::from("../b"));
        for p in ["/", "/..", ".", "a/..", "/./", "//"] {
            assert!(is_root_like(Path::new(p)), "{p}");
        }
        for p in ["/a", "runs/x", "../x"] {
            assert!(!is_root_like(Path::new(p)), "{p}");
        }
    }

    #[test]
    fn a_resolver_that_follows_a_link_out_of_the_root_is_refused() {
        // Simulates /srv/data/link -> /etc as the worker's canonicalizing resolver sees it.
        let resolve = |p: &Path| match p.strip_prefix("/srv/data/link") {
            Ok(rest) => Path::new("/etc").join(rest),
            Err(_) => p.to_path_buf(),
        };
        let e = check_with(
            &spec("link/passwd", "/srv/runs/x"),
            Path::new("/srv/data"),
            &roots(),
            &resolve,
        )
        .unwrap_err();
        assert!(e.to_string().contains("resolves to \"/etc/passwd\""), "{e}");
    }
}
