//! The crate graph is the architecture (ARCHITECTURE.md): each crate may depend only on the
//! ringtrain crates listed here, and only the listed crates may use burn. Checked with
//! `cargo metadata` so a new dependency edge fails the tests instead of creeping in.

use std::collections::BTreeMap;

/// Allowed internal dependencies (normal, not dev) of each crate.
const ALLOWED: &[(&str, &[&str])] = &[
    ("ringtrain-core", &[]),
    ("ringtrain-spec", &["ringtrain-core"]),
    ("ringtrain-data", &["ringtrain-core", "ringtrain-spec"]),
    ("ringtrain-models", &["ringtrain-core", "ringtrain-spec"]),
    (
        "ringtrain-train",
        &[
            "ringtrain-core",
            "ringtrain-spec",
            "ringtrain-data",
            "ringtrain-models",
        ],
    ),
    ("ringtrain-proto", &["ringtrain-core"]),
    // Hyperparameter search: pure functions over the job spec, no IO beyond the sweep file.
    ("ringtrain-sweep", &["ringtrain-core", "ringtrain-spec"]),
    (
        "ringtrain-collective",
        &["ringtrain-core", "ringtrain-proto"],
    ),
    // The Prometheus endpoint both services serve their series on (HTTP only, no ringtrain deps).
    ("ringtrain-telemetry", &[]),
    // The coordinator schedules and records; it never trains, so no models/train/burn. It mounts
    // the collective library's rendezvous service so ranks meet at the coordinator.
    (
        "ringtrain-coordinator",
        &[
            "ringtrain-core",
            "ringtrain-spec",
            "ringtrain-proto",
            "ringtrain-collective",
            "ringtrain-telemetry",
            "ringtrain-sweep",
        ],
    ),
    (
        "ringtrain-worker",
        &[
            "ringtrain-core",
            "ringtrain-spec",
            "ringtrain-data",
            "ringtrain-models",
            "ringtrain-train",
            "ringtrain-proto",
            "ringtrain-collective",
            "ringtrain-telemetry",
        ],
    ),
    (
        "ringtrain-cli",
        &[
            "ringtrain-core",
            "ringtrain-spec",
            "ringtrain-data",
            "ringtrain-models",
            "ringtrain-train",
            "ringtrain-proto",
            "ringtrain-collective",
            "ringtrain-coordinator",
            "ringtrain-worker",
            "ringtrain-sweep",
            "ringtrain-infer",
        ],
    ),
    // The device-side runtime: reads an export with no ringtrain crate, no burn, no tokio and no
    // gRPC (checked below), so it builds small and `no_std`.
    ("ringtrain-infer", &[]),
    // Fuzz targets call the readers they test; nothing depends on this crate.
    (
        "ringtrain-fuzz",
        &[
            "ringtrain-spec",
            "ringtrain-data",
            "ringtrain-models",
            "ringtrain-train",
            "ringtrain-infer",
            "ringtrain-proto",
            "ringtrain-collective",
        ],
    ),
];

/// Crates allowed to depend on burn (the collective library and the future coordinator must not).
const BURN_USERS: &[&str] = &[
    "ringtrain-models",
    // Builds the model its safetensors target matches inputs against.
    "ringtrain-fuzz",
    "ringtrain-train",
    "ringtrain-worker",
    "ringtrain-cli",
];

#[test]
fn crate_dependencies_follow_the_architecture() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut problems = Vec::new();
    for package in meta["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap();
        let Some(ok) = allowed.get(name) else {
            problems.push(format!("{name}: not in the architecture table (add it to tests/architecture.rs and ARCHITECTURE.md)"));
            continue;
        };
        for dep in package["dependencies"].as_array().unwrap() {
            if dep["kind"].as_str() == Some("dev") {
                continue;
            }
            let dep_name = dep["name"].as_str().unwrap();
            if dep_name.starts_with("ringtrain-") && !ok.contains(&dep_name) {
                problems.push(format!("{name} must not depend on {dep_name}"));
            }
            if dep_name == "burn" && !BURN_USERS.contains(&name) {
                problems.push(format!("{name} must not depend on burn"));
            }
            if name == "ringtrain-infer" && ["tokio", "tonic", "prost"].contains(&dep_name) {
                problems.push(format!(
                    "{name} must not depend on {dep_name} (a device runtime)"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Module cycles inside each crate.
//
// The crate graph above keeps crates acyclic; this keeps the modules inside each crate acyclic,
// so every crate reads bottom-up (a module can be understood from the ones it imports). The graph
// is built from the source text alone: `mod` items give the module tree (from `lib.rs`,
// `main.rs` and `src/bin/*.rs`), and every path that starts with `crate::`, `super::`, `self::`
// or a child module's name (in a `use` tree or inline in code) is an edge to the deepest module
// it names, following `pub use` re-exports. An edge between two modules becomes an edge between
// their ancestors that are siblings (children of the deepest common ancestor): a child using
// its parent, or a parent its child, is the ordinary shape of a Rust module and never a cycle.
// `#[cfg(test)]` modules are skipped: test code may reach anywhere without shaping the crate.
// ---------------------------------------------------------------------------------------------

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// The modules of one crate and the sibling-level edges between them.
#[derive(Default, Debug)]
struct ModuleGraph {
    /// Every module, as its path from the crate root (`""` is the root; `a::b`).
    modules: BTreeSet<String>,
    /// Sibling edges `from -> to`, each with one witness `file:line` that causes it.
    edges: BTreeMap<String, BTreeMap<String, String>>,
}

/// What a source file contributes, with comments and literals blanked out.
struct Scope {
    /// Module path of this scope.
    module: Vec<String>,
    /// Skipped (`#[cfg(test)]`) scopes record nothing.
    skipped: bool,
    /// Brace depth at which this scope's block closes (`None` for a file scope).
    close_depth: Option<usize>,
}

/// A path use found in a module: (module path, path segments as written, file:line).
type RawUse = (Vec<String>, Vec<String>, String);

/// Blanks comments, string and char literals (keeping newlines), so that braces, `mod` and
/// `use` are only seen in code.
fn strip_code(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        let prev_ident = i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_');
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                blank(&mut out, b[i]);
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
        } else if !prev_ident && (c == 'r' || (c == 'b' && next == Some('r'))) && {
            let start = if c == 'b' { i + 2 } else { i + 1 };
            let mut j = start;
            while b.get(j) == Some(&'#') {
                j += 1;
            }
            b.get(j) == Some(&'"')
        } {
            // Raw string: r"..." or r#"..."# (any number of #), optionally b-prefixed.
            let start = if c == 'b' { i + 2 } else { i + 1 };
            let mut j = start;
            while b[j] == '#' {
                j += 1;
            }
            let hashes = j - start;
            let mut k = j + 1;
            while k < b.len() {
                if b[k] == '"' && (0..hashes).all(|h| b.get(k + 1 + h) == Some(&'#')) {
                    k += 1 + hashes;
                    break;
                }
                k += 1;
            }
            for &ch in &b[i..k.min(b.len())] {
                blank(&mut out, ch);
            }
            i = k;
        } else if c == '"' {
            blank(&mut out, c);
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    blank(&mut out, b[i]);
                    i += 1;
                }
                if i < b.len() {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
            if i < b.len() {
                blank(&mut out, b[i]);
                i += 1;
            }
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a): only literals are blanked.
            let end = if next == Some('\\') {
                (i + 2..b.len()).find(|&k| b[k] == '\'')
            } else if b.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    for &ch in &b[i..=end] {
                        blank(&mut out, ch);
                    }
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Tokens of stripped code: identifiers (with `$`, so `$crate` is not `crate`), `::`, and single
/// punctuation characters; each with its 1-based line.
fn tokens(code: &str) -> Vec<(String, usize)> {
    let b: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let start = i;
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_' || b[i] == '$') {
                i += 1;
            }
            out.push((b[start..i].iter().collect(), line));
        } else if c == ':' && b.get(i + 1) == Some(&':') {
            out.push(("::".into(), line));
            i += 2;
        } else {
            out.push((c.to_string(), line));
            i += 1;
        }
    }
    out
}

/// Expands a `use` tree (tokens after `use`, up to `;`) into (path, bound name) pairs; a glob
/// binds `*`, `self` in braces binds the prefix's last segment.
fn expand_use(toks: &[String]) -> Vec<(Vec<String>, String)> {
    fn tree(
        toks: &[String],
        i: &mut usize,
        prefix: Vec<String>,
        out: &mut Vec<(Vec<String>, String)>,
    ) {
        let mut path = prefix;
        loop {
            match toks.get(*i).map(String::as_str) {
                Some("{") => {
                    *i += 1;
                    loop {
                        if toks.get(*i).map(String::as_str) == Some("}") {
                            *i += 1;
                            break;
                        }
                        tree(toks, i, path.clone(), out);
                        match toks.get(*i).map(String::as_str) {
                            Some(",") => *i += 1,
                            Some("}") => {
                                *i += 1;
                                break;
                            }
                            _ => return,
                        }
                    }
                    return;
                }
                Some("*") => {
                    *i += 1;
                    out.push((path, "*".into()));
                    return;
                }
                Some("::") => *i += 1,
                Some(seg) if seg != "," && seg != "}" && seg != "as" => {
                    if seg == "self" && !path.is_empty() {
                        *i += 1;
                        let name = path.last().cloned().unwrap_or_default();
                        out.push((path.clone(), name));
                        if toks.get(*i).map(String::as_str) == Some("as") {
                            *i += 2;
                        }
                        return;
                    }
                    path.push(seg.to_string());
                    *i += 1;
                    if toks.get(*i).map(String::as_str) != Some("::") {
                        let mut name = seg.to_string();
                        if toks.get(*i).map(String::as_str) == Some("as") {
                            name = toks.get(*i + 1).cloned().unwrap_or_default();
                            *i += 2;
                        }
                        out.push((path, name));
                        return;
                    }
                }
                _ => return,
            }
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let before = i;
        tree(toks, &mut i, Vec::new(), &mut out);
        if toks.get(i).map(String::as_str) == Some(",") || i == before {
            i += 1;
        }
    }
    out
}

/// The file that `mod name;` in `file` refers to, if it exists: beside a crate root or a
/// `mod.rs`, otherwise in the folder named after the file.
fn child_file(
    file: &Path,
    is_root: bool,
    name: &str,
    exists: &dyn Fn(&Path) -> bool,
) -> Option<PathBuf> {
    let dir = file.parent()?;
    let stem = file.file_stem()?.to_str()?;
    let base = if is_root || stem == "mod" {
        dir.to_path_buf()
    } else {
        dir.join(stem)
    };
    [
        base.join(format!("{name}.rs")),
        base.join(name).join("mod.rs"),
    ]
    .into_iter()
    .find(|p| exists(p))
}

/// Reads one crate root and every module file below it, recording modules, `pub use`
/// re-exports and raw path uses.
fn scan_file(
    file: &Path,
    module: Vec<String>,
    read: &dyn Fn(&Path) -> Option<String>,
    modules: &mut BTreeSet<String>,
    reexports: &mut HashMap<String, Vec<(String, Vec<String>)>>,
    uses: &mut Vec<RawUse>,
) {
    let Some(text) = read(file) else { return };
    let toks = tokens(&strip_code(&text));
    let words: Vec<String> = toks.iter().map(|(t, _)| t.clone()).collect();
    let mut scopes = vec![Scope {
        module: module.clone(),
        skipped: false,
        close_depth: None,
    }];
    modules.insert(module.join("::"));
    let mut depth = 0usize;
    // Whether the tokens since the last item boundary carry `#[cfg(test)]`.
    let mut cfg_test = false;
    let mut i = 0;
    while i < toks.len() {
        let (tok, line) = (&toks[i].0, toks[i].1);
        let scope = scopes.last().unwrap();
        let (cur, skipped) = (scope.module.clone(), scope.skipped);
        let here = format!("{}:{line}", file.display());
        match tok.as_str() {
            "{" => {
                depth += 1;
                cfg_test = false;
            }
            "}" => {
                depth = depth.saturating_sub(1);
                if scopes.last().unwrap().close_depth == Some(depth) {
                    scopes.pop();
                }
                cfg_test = false;
            }
            ";" => cfg_test = false,
            "#" if words.get(i + 1).map(String::as_str) == Some("[")
                && words.get(i + 2).map(String::as_str) == Some("cfg")
                && words.get(i + 3).map(String::as_str) == Some("(")
                && words.get(i + 4).map(String::as_str) == Some("test")
                && words.get(i + 5).map(String::as_str) == Some(")") =>
            {
                cfg_test = true;
            }
            "mod" if words.get(i + 1).is_some() => {
                let name = words[i + 1].clone();
                let mut child = cur.clone();
                child.push(name.clone());
                let skip = skipped || cfg_test;
                match words.get(i + 2).map(String::as_str) {
                    Some(";") => {
                        if !skip {
                            let exists = |p: &Path| read(p).is_some();
                            if let Some(path) = child_file(file, module.is_empty(), &name, &exists)
                            {
                                scan_file(&path, child, read, modules, reexports, uses);
                            }
                        }
                        i += 3;
                        cfg_test = false;
                        continue;
                    }
                    Some("{") => {
                        if !skip {
                            modules.insert(child.join("::"));
                        }
                        scopes.push(Scope {
                            module: child,
                            skipped: skip,
                            close_depth: Some(depth),
                        });
                        depth += 1;
                        i += 3;
                        cfg_test = false;
                        continue;
                    }
                    _ => {}
                }
            }
            "use" if !skipped => {
                let public = i > 0
                    && (words[i - 1] == "pub"
                        || (words[i - 1] == ")" && i >= 4 && words[i - 4] == "pub"));
                let end = (i..words.len())
                    .find(|&k| words[k] == ";")
                    .unwrap_or(words.len());
                for (path, name) in expand_use(&words[i + 1..end]) {
                    if public && name != "*" {
                        reexports
                            .entry(cur.join("::"))
                            .or_default()
                            .push((name, path.clone()));
                    }
                    uses.push((cur.clone(), path, here.clone()));
                }
                i = end;
                continue;
            }
            "crate" | "super" | "self"
                if !skipped
                    && words.get(i + 1).map(String::as_str) == Some("::")
                    && (i == 0 || words[i - 1] != "::") =>
            {
                let mut path = vec![tok.clone()];
                let mut k = i + 1;
                while words.get(k).map(String::as_str) == Some("::")
                    && words
                        .get(k + 1)
                        .is_some_and(|w| w.chars().all(|c| c.is_alphanumeric() || c == '_'))
                {
                    path.push(words[k + 1].clone());
                    k += 2;
                }
                uses.push((cur, path, here));
                i = k;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
}

/// Resolves a path used in module `from` to the deepest module it names (following `pub use`
/// re-exports up to a few hops), or `None` for paths outside the crate.
fn resolve(
    from: &[String],
    path: &[String],
    modules: &BTreeSet<String>,
    reexports: &HashMap<String, Vec<(String, Vec<String>)>>,
    hops: usize,
) -> Option<Vec<String>> {
    let mut at: Vec<String> = from.to_vec();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            at.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        Some("super") => {
            while rest.first().map(String::as_str) == Some("super") {
                at.pop()?;
                rest = &rest[1..];
            }
        }
        Some(first) => {
            let mut child = at.clone();
            child.push(first.to_string());
            if !modules.contains(&child.join("::")) {
                return None; // an external crate or a local item
            }
        }
        None => return None,
    }
    for (n, seg) in rest.iter().enumerate() {
        let mut child = at.clone();
        child.push(seg.clone());
        if modules.contains(&child.join("::")) {
            at = child;
            continue;
        }
        if hops > 0
            && let Some((_, target)) = reexports
                .get(&at.join("::"))
                .and_then(|list| list.iter().find(|(name, _)| name == seg))
        {
            let mut target = target.clone();
            target.extend(rest[n + 1..].iter().cloned());
            return resolve(&at, &target, modules, reexports, hops - 1).or(Some(at));
        }
        break;
    }
    Some(at)
}

/// Builds the module graph of the crate whose roots (`lib.rs`, `main.rs`, `bin/*.rs`) are given.
fn module_graph(roots: &[PathBuf], read: &dyn Fn(&Path) -> Option<String>) -> ModuleGraph {
    let mut graph = ModuleGraph::default();
    for root in roots {
        // Each root is its own crate namespace; binaries are few and small, so they share the
        // graph under a prefix that keeps their modules apart from the library's.
        let prefix: Vec<String> = match root.file_stem().and_then(|s| s.to_str()) {
            Some("lib") => Vec::new(),
            Some(stem) => vec![format!("<bin {stem}>")],
            None => continue,
        };
        let mut modules = BTreeSet::new();
        let mut reexports = HashMap::new();
        let mut uses = Vec::new();
        scan_file(
            root,
            Vec::new(),
            read,
            &mut modules,
            &mut reexports,
            &mut uses,
        );
        for (from, path, witness) in uses {
            let Some(to) = resolve(&from, &path, &modules, &reexports, 4) else {
                continue;
            };
            let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common == from.len() || common == to.len() {
                continue; // self, an ancestor or a descendant
            }
            let mut a: Vec<String> = prefix.clone();
            a.extend(from[..=common].iter().cloned());
            let mut b: Vec<String> = prefix.clone();
            b.extend(to[..=common].iter().cloned());
            graph
                .edges
                .entry(a.join("::"))
                .or_default()
                .entry(b.join("::"))
                .or_insert(witness);
        }
        for m in modules {
            let mut full = prefix.clone();
            full.extend(m.split("::").filter(|s| !s.is_empty()).map(String::from));
            graph.modules.insert(full.join("::"));
        }
    }
    graph
}

/// Every cycle of the graph, one per strongly connected component with more than one module:
/// (its modules, sorted; one closed walk through them with a witness per edge).
fn cycles(graph: &ModuleGraph) -> Vec<(BTreeSet<String>, String)> {
    let reach = |start: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![start.to_string()];
        while let Some(n) = stack.pop() {
            for next in graph.edges.get(&n).into_iter().flat_map(|e| e.keys()) {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<String, BTreeSet<String>> =
        graph.edges.keys().map(|n| (n.clone(), reach(n))).collect();
    let mut found: Vec<(BTreeSet<String>, String)> = Vec::new();
    for (n, r) in &reachable {
        if !r.contains(n) || found.iter().any(|(c, _)| c.contains(n)) {
            continue;
        }
        let component: BTreeSet<String> = r
            .iter()
            .filter(|m| reachable.get(*m).is_some_and(|rm| rm.contains(n)))
            .cloned()
            .collect();
        // A shortest walk back to `n` (breadth first), shown with the line that makes each edge.
        let mut parent: BTreeMap<String, String> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([n.clone()]);
        'bfs: while let Some(m) = queue.pop_front() {
            for next in graph.edges.get(&m).into_iter().flat_map(|e| e.keys()) {
                if next == n {
                    parent.insert(format!("<back to> {n}"), m.clone());
                    break 'bfs;
                }
                if component.contains(next) && !parent.contains_key(next) {
                    parent.insert(next.clone(), m.clone());
                    queue.push_back(next.clone());
                }
            }
        }
        let mut back = Vec::new();
        let mut at = parent[&format!("<back to> {n}")].clone();
        while &at != n {
            back.push(at.clone());
            at = parent[&at].clone();
        }
        let mut walk = vec![n.clone()];
        walk.extend(back.into_iter().rev());
        walk.push(n.clone());
        let steps: Vec<String> = walk
            .windows(2)
            .map(|w| format!("{} -> {} ({})", w[0], w[1], graph.edges[&w[0]][&w[1]]))
            .collect();
        found.push((component, steps.join(", ")));
    }
    found
}

/// The crate roots under `src`: `lib.rs`, `main.rs` and `bin/*.rs`.
fn crate_roots(src: &Path) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = ["lib.rs", "main.rs"]
        .iter()
        .map(|f| src.join(f))
        .filter(|p| p.is_file())
        .collect();
    if let Ok(dir) = std::fs::read_dir(src.join("bin")) {
        let mut bins: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "rs"))
            .collect();
        bins.sort();
        roots.extend(bins);
    }
    roots
}

#[test]
fn no_module_cycles_inside_any_crate() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut names: Vec<String> = std::fs::read_dir(&crates)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("src").is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 10, "crates found: {names:?}");
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    let mut problems = Vec::new();
    for name in &names {
        let graph = module_graph(&crate_roots(&crates.join(name).join("src")), &read);
        assert!(
            graph.modules.len() > 1 || name == "ringtrain-core" || name == "ringtrain-telemetry",
            "{name}: no modules found"
        );
        for (component, walk) in cycles(&graph) {
            problems.push(format!(
                "{name}: module cycle among {{{}}}: {walk}",
                component.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    // Witnesses read `crates/…/src/x.rs:12`, relative to the workspace root.
    let prefix = format!("{}/", crates.display());
    let report = problems.join("\n").replace(&prefix, "crates/");
    assert!(problems.is_empty(), "{report}");
}

/// Builds the graph of a synthetic crate given as (path under `src/`, text) pairs.
fn synthetic(files: &[(&str, &str)]) -> ModuleGraph {
    let files: HashMap<PathBuf, String> = files
        .iter()
        .map(|(p, t)| (Path::new("src").join(p), t.to_string()))
        .collect();
    module_graph(&[PathBuf::from("src/lib.rs")], &|p: &Path| {
        files.get(p).cloned()
    })
}

#[test]
fn a_deliberate_cycle_is_found_and_named() {
    let graph = synthetic(&[
        ("lib.rs", "pub mod a;\nmod b;\npub use b::Thing;\n"),
        (
            "a.rs",
            "use crate::Thing; // through the re-export: a -> b\n",
        ),
        (
            "b.rs",
            "pub struct Thing;\nfn f() { let _ = crate::a::helper(); }\n",
        ),
    ]);
    let found = cycles(&graph);
    assert_eq!(found.len(), 1, "{found:?}");
    let names: Vec<&str> = found[0].0.iter().map(String::as_str).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(
        found[0].1, "a -> b (src/a.rs:1), b -> a (src/b.rs:2)",
        "the walk names each edge's line"
    );
}

#[test]
fn nested_cycles_are_found_between_siblings() {
    let graph = synthetic(&[
        ("lib.rs", "mod pipeline;\n"),
        (
            "pipeline/mod.rs",
            "mod plan;\nmod engine {\n    use super::plan::Plan;\n}\n",
        ),
        (
            "pipeline/plan.rs",
            "use super::engine::{self as e, Engine};\n",
        ),
    ]);
    let found = cycles(&graph);
    assert_eq!(found.len(), 1, "{found:?}");
    let names: Vec<&str> = found[0].0.iter().map(String::as_str).collect();
    assert_eq!(names, ["pipeline::engine", "pipeline::plan"]);
}

#[test]
fn parents_children_tests_comments_and_strings_make_no_cycle() {
    let graph = synthetic(&[
        (
            "lib.rs",
            "mod a;\nmod b;\npub struct Root;\n#[cfg(test)]\nmod tests { use crate::b::x; }\n",
        ),
        (
            "a.rs",
            "mod inner;\nuse crate::Root;\nuse crate::b::Y;\npub fn f() -> inner::Z { todo!() }\n",
        ),
        ("a/inner.rs", "use super::super::Root;\nuse super::f;\n"),
        (
            "b.rs",
            "// use crate::a::f;\nconst S: &str = \"crate::a::f\";\nconst R: &str = r#\"crate::a\"#;\n\
             fn g<'a>(x: &'a str) -> char { '{' }\n#[cfg(test)]\nmod tests { use crate::a::f; }\n",
        ),
    ]);
    assert!(cycles(&graph).is_empty(), "{:?}", cycles(&graph));
    assert_eq!(graph.edges.len(), 1, "only a -> b: {:?}", graph.edges);
    assert!(graph.modules.contains("a::inner"));
    assert!(!graph.modules.contains("tests"));
}

// ---------------------------------------------------------------------------------------------
// No catch-all arm over a task-kind enum.
//
// A new task kind must be a compile error everywhere it needs handling (ARCHITECTURE.md, "How to
// add a task kind"), so no `match` over one of the enums that follow the task kind may end in a
// catch-all: an arm whose pattern is `_` or a lone binding (`other =>`) without a guard; nor may a
// `matches!` test one of their variants (an implicit `_ => false`). A match counts as over a
// kind enum when one of its arm patterns names `Enum::`. Refusals written as `let V = x else`
// stay allowed: they name the one variant a function takes and say why the others are refused.
// ---------------------------------------------------------------------------------------------

/// The enums that follow the task kind, checked everywhere under `crates/*/src`.
const KIND_ENUMS: &[&str] = &[
    "TaskSpec",
    "TaskKind",
    "TaskWire",
    "DataKindWire",
    "Prepared",
    "Fitted",
    "Targets",
    "TaskMetrics",
    "HeadKind",
    "InputKind",
    "Inputs",
];

/// Local aliases of a kind enum: (path prefix under the workspace root, name).
const KIND_ALIASES: &[(&str, &str)] = &[("crates/ringtrain-spec/src/validate/", "Kind")];

/// Index just past the bracket that closes the one opening at `open` (or the end).
fn close_of(toks: &[(String, usize)], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, (t, _)) in toks.iter().enumerate().skip(open) {
        match t.as_str() {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    toks.len()
}

/// Whether `toks` name `Enum::` for one of `enums`.
fn names_kind(toks: &[(String, usize)], enums: &[&str]) -> bool {
    toks.windows(2)
        .any(|w| enums.contains(&w[0].0.as_str()) && w[1].0 == "::")
}

/// Catch-all arms over a kind enum in one file's source, as `file:line` descriptions, and how
/// many matches over a kind enum the file has.
fn kind_catch_alls(file: &str, text: &str, enums: &[&str]) -> (Vec<String>, usize) {
    let code = strip_code(text);
    let toks = tokens(&code);
    let mut found = Vec::new();
    let mut seen = 0;
    for (m, (t, line)) in toks.iter().enumerate() {
        if t == "matches" && toks.get(m + 1).is_some_and(|n| n.0 == "!") {
            let args = close_of(&toks, m + 2);
            if names_kind(&toks[m + 2..args], enums) {
                found.push(format!("{file}:{line}: matches! over a kind enum"));
            }
            continue;
        }
        if t != "match" {
            continue;
        }
        // The body opens at the first `{` outside brackets (a scrutinee holds no bare braces).
        let mut depth = 0usize;
        let mut open = None;
        for (i, (u, _)) in toks.iter().enumerate().skip(m + 1) {
            match u.as_str() {
                "(" | "[" => depth += 1,
                ")" | "]" => depth = depth.saturating_sub(1),
                "{" if depth == 0 => {
                    open = Some(i);
                    break;
                }
                ";" if depth == 0 => break,
                _ => {}
            }
        }
        let Some(open) = open else { continue };
        let end = close_of(&toks, open) - 1; // the closing `}`
        // Split the body into arms: a pattern up to `=>`, then a block or an expression up to
        // the next `,` outside brackets.
        let mut arms: Vec<(usize, usize)> = Vec::new();
        let mut i = open + 1;
        while i < end {
            let start = i;
            let mut depth = 0usize;
            while i < end && !(depth == 0 && toks[i].0 == "=" && toks[i + 1].0 == ">") {
                match toks[i].0.as_str() {
                    "(" | "[" | "{" => depth += 1,
                    ")" | "]" | "}" => depth = depth.saturating_sub(1),
                    _ => {}
                }
                i += 1;
            }
            if i >= end {
                break;
            }
            arms.push((start, i));
            i += 2;
            if toks[i].0 == "{" {
                i = close_of(&toks, i);
                if i < end && toks[i].0 == "," {
                    i += 1;
                }
            } else {
                let mut depth = 0usize;
                while i < end && !(depth == 0 && toks[i].0 == ",") {
                    match toks[i].0.as_str() {
                        "(" | "[" | "{" => depth += 1,
                        ")" | "]" | "}" => depth = depth.saturating_sub(1),
                        _ => {}
                    }
                    i += 1;
                }
                i += 1;
            }
        }
        if !arms.iter().any(|&(a, b)| names_kind(&toks[a..b], enums)) {
            continue;
        }
        seen += 1;
        for &(a, b) in &arms {
            let pat: Vec<&str> = toks[a..b].iter().map(|t| t.0.as_str()).collect();
            let catch_all = match pat.as_slice() {
                ["_"] => true,
                [name] => name.starts_with(|c: char| c.is_lowercase() || c == '_'),
                _ => false,
            };
            if catch_all {
                found.push(format!(
                    "{file}:{}: `{} =>` in a match over a kind enum",
                    toks[a].1, pat[0]
                ));
            }
        }
    }
    (found, seen)
}

/// Every `.rs` file below `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn no_catch_all_arm_over_a_task_kind_enum() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().unwrap();
    let mut problems = Vec::new();
    let (mut files, mut matches) = (0, 0);
    for krate in std::fs::read_dir(root.join("crates")).unwrap().flatten() {
        for path in rust_files(&krate.path().join("src")) {
            let rel = path
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let mut enums = KIND_ENUMS.to_vec();
            enums.extend(
                KIND_ALIASES
                    .iter()
                    .filter(|(prefix, _)| rel.starts_with(prefix))
                    .map(|(_, name)| *name),
            );
            let text = std::fs::read_to_string(&path).unwrap();
            let (found, seen) = kind_catch_alls(&rel, &text, &enums);
            problems.extend(found);
            matches += seen;
            files += 1;
        }
    }
    assert!(files > 100, "only {files} source files found");
    // The scan sees the matches it guards (the constructors, wire.rs, the spec's kind tables...).
    assert!(
        matches > 30,
        "only {matches} matches over a kind enum found"
    );
    problems.sort();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_catch_all_arm_over_a_kind_enum_is_found() {
    let text = "fn f(t: &TaskSpec, h: HeadKind, k: Kind) -> u8 {\n\
        let a = match t {\n\
            TaskSpec::Forecast { .. } => { 1 }\n\
            // _ => 9, in a comment\n\
            _ => 2,\n\
        };\n\
        let b = match (t, k) {\n\
            (TaskSpec::Classify { x, .. }, _) => x.len(),\n\
            other => 3,\n\
        };\n\
        let c = match h { HeadKind::Regression { .. } => 1, HeadKind::Classes { .. } => 2 };\n\
        let d = match k { Kind::A => 1, _ => \"_ =>\".len() };\n\
        let e = match n { Some(x) if x > 1 => 1, _ => 0 };\n\
        matches!(h, HeadKind::NextToken { .. });\n\
        a + b + c + d + e\n\
    }\n";
    let (found, seen) = kind_catch_alls("f.rs", text, &["TaskSpec", "HeadKind"]);
    assert_eq!(seen, 3, "matches a, b and c are over a kind enum");
    assert_eq!(
        found,
        [
            "f.rs:5: `_ =>` in a match over a kind enum",
            "f.rs:9: `other =>` in a match over a kind enum",
            "f.rs:14: matches! over a kind enum",
        ]
    );
    // With `Kind` as a kind enum (validate's alias), the `_ =>` over it is found too.
    let (with_alias, _) = kind_catch_alls("f.rs", text, &["TaskSpec", "HeadKind", "Kind"]);
    assert!(
        with_alias.contains(&"f.rs:12: `_ =>` in a match over a kind enum".to_string()),
        "{with_alias:?}"
    );
}
