//! The layers of docs/architecture.md ("Layers"), checked against the sources. Every
//! `crate::`/`super::`/`self::` path under `src/` (in `use` trees and in expressions; comments,
//! string literals and `#[cfg(test)]` code left out) is resolved to the module it names, and:
//! - a module imports only from its own layer and the layers below it;
//! - no top-level modules import each other, directly or round a cycle;
//! - no files of one module import each other round a cycle;
//! - the mesh uses neither `actix_web` nor `awc`: it knows nothing of HTTP.
//!
//! Paths relative to a child module (`backend::X` in `mesh/mod.rs`) and items reached through a
//! parent's re-export (`super::X`) count as imports of the parent, which is never a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bottom first; each layer may use itself and the layers before it. Keep in step with the
/// list in docs/architecture.md (checked below).
const LAYERS: &[(&str, &[&str])] = &[
    (
        "foundation",
        &[
            "error",
            "redact",
            "caller",
            "config",
            "engines",
            "netguard",
            "catalogue",
            "store",
            "replica",
            "healthcheck",
            "tls",
            "translate",
            "period",
            "telemetry",
        ],
    ),
    ("mesh", &["mesh", "quota"]),
    ("record", &["record"]),
    ("relay", &["relay", "discovery"]),
    ("auth", &["auth"]),
    ("accounting", &["accounting"]),
    ("metrics", &["metrics"]),
    ("jobs", &["jobs", "media"]),
    ("runtime", &["settings", "reload", "shutdown"]),
    ("api", &["api"]),
    ("admin", &["admin"]),
    ("wiring", &["server", "listen", "demo", "main"]),
];

/// Modules known by another name (none now; kept for moves in progress).
const RENAMED: &[(&str, &str)] = &[];

/// Crates the mesh may not use: routing knows nothing of HTTP.
const HTTP_CRATES: &[&str] = &["actix_web", "awc"];

/// Modules whose files may import each other round a cycle (none: the mock engine, which
/// had one, is its own crate now).
const INTERNAL_CYCLES_UNCHECKED: &[&str] = &[];

/// A module below the crate root, as its path segments (`["mesh", "backend"]`).
type ModPath = Vec<String>;

/// One source file: its module, its name for messages, and its text.
struct SourceFile {
    module: ModPath,
    name: String,
    text: String,
}

/// A path that names something in another module (or another crate).
#[derive(Debug, Clone)]
struct Use {
    /// The path as written, `self` groups folded (`crate::mesh::Lease`, `awc::Client`).
    path: Vec<String>,
    /// Where, as `src/file.rs:line`.
    at: String,
}

/// An import of one module by another.
#[derive(Debug, Clone)]
struct Edge {
    from: ModPath,
    to: ModPath,
    at: String,
}

/// Every import between modules and every use of an outside crate's path, per module.
struct Analysis {
    edges: Vec<Edge>,
    uses: Vec<(ModPath, Use)>,
}

// ---------------------------------------------------------------------------------------------
// Reading sources

/// `text` with comments, string and character literals blanked out (newlines kept, so line
/// numbers still hold).
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let prev_is_ident = i > 0 && is_ident_char(chars[i - 1]);
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
        } else if c == 'r' && !prev_is_ident && matches!(next, Some('"') | Some('#')) {
            // A raw string `r"…"`, `r#"…"#` (also after `b`, which stays as an identifier).
            let hashes = chars[i + 1..].iter().take_while(|&&h| h == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let close: Vec<char> = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let mut j = i + 2 + hashes;
            while j < chars.len() && !chars[j..].starts_with(&close) {
                j += 1;
            }
            let end = (j + close.len()).min(chars.len());
            for &skipped in &chars[i..end] {
                blank(&mut out, skipped);
            }
            i = end;
        } else if c == '"' {
            blank(&mut out, c);
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                let step = if chars[i] == '\\' { 2 } else { 1 };
                for &skipped in chars.iter().skip(i).take(step) {
                    blank(&mut out, skipped);
                }
                i += step;
            }
            if i < chars.len() {
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            // A character literal ('x', '\n', '\''); a lifetime or label has no closing quote.
            let mut j = i + 1;
            if chars.get(j) == Some(&'\\') {
                j += 2;
            }
            while j < chars.len() && chars[j] != '\'' {
                j += 1;
            }
            let end = (j + 1).min(chars.len());
            for &skipped in &chars[i..end] {
                blank(&mut out, skipped);
            }
            i = end;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `code` without the items marked `#[cfg(test)]`, and the names of the child modules declared
/// test-only there (`#[cfg(test)] mod tests;`).
fn without_tests(code: &str) -> (String, Vec<String>) {
    const MARK: &str = "#[cfg(test)]";
    let mut chars: Vec<char> = code.chars().collect();
    let mut test_children = Vec::new();
    let mut from = 0;
    while let Some(start) = find(&chars, MARK, from) {
        let item = start + MARK.chars().count();
        let end = item_end(&chars, item);
        let declared: String = chars[item..end].iter().collect();
        let words: Vec<&str> = declared
            .split(|c: char| !is_ident_char(c))
            .filter(|w| !w.is_empty())
            .collect();
        if let ["mod", name] | ["pub", "mod", name] = words.as_slice() {
            if declared.trim_end().ends_with(';') {
                test_children.push(name.to_string());
            }
        }
        for c in &mut chars[start..end] {
            if *c != '\n' {
                *c = ' ';
            }
        }
        from = end;
    }
    (chars.into_iter().collect(), test_children)
}

fn find(chars: &[char], needle: &str, from: usize) -> Option<usize> {
    let needle: Vec<char> = needle.chars().collect();
    (from..chars.len().saturating_sub(needle.len() - 1)).find(|&i| chars[i..].starts_with(&needle))
}

/// Where the item starting at `from` ends: after its first `;`, or after the braces it opens
/// first, whichever comes first.
fn item_end(chars: &[char], from: usize) -> usize {
    let mut depth = 0usize;
    for (i, &c) in chars.iter().enumerate().skip(from) {
        match c {
            ';' if depth == 0 => return i + 1,
            '{' => depth += 1,
            '}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    chars.len()
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    PathSep,
    Punct(char),
}

fn tokens(code: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if is_ident_char(c) {
            let start = i;
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
            out.push((Token::Ident(chars[start..i].iter().collect()), line));
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push((Token::PathSep, line));
            i += 2;
        } else {
            out.push((Token::Punct(c), line));
            i += 1;
        }
    }
    out
}

/// Every path in `code`: each leaf of every `use` tree, and every `a::b::c` chain elsewhere.
fn paths(code: &str) -> Vec<(Vec<String>, usize)> {
    let toks = tokens(code);
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let follows_sep = i > 0 && toks[i - 1].0 == Token::PathSep;
        match &toks[i].0 {
            Token::Ident(word) if word == "use" && !follows_sep => {
                i = use_tree(&toks, i + 1, Vec::new(), &mut out);
            }
            Token::Ident(first)
                if !follows_sep && toks.get(i + 1).map(|t| &t.0) == Some(&Token::PathSep) =>
            {
                let mut path = vec![first.clone()];
                let mut j = i + 1;
                while let (Some((Token::PathSep, _)), Some((Token::Ident(next), _))) =
                    (toks.get(j), toks.get(j + 1))
                {
                    path.push(next.clone());
                    j += 2;
                }
                out.push((path, toks[i].1));
                i = j;
            }
            _ => i += 1,
        }
    }
    out
}

/// Read one use tree from `i` under `prefix`; the index after it.
fn use_tree(
    toks: &[(Token, usize)],
    mut i: usize,
    mut prefix: Vec<String>,
    out: &mut Vec<(Vec<String>, usize)>,
) -> usize {
    while let Some((tok, line)) = toks.get(i) {
        match tok {
            Token::PathSep => i += 1,
            Token::Ident(word) if word == "as" => {
                out.push((prefix, *line));
                return i + 2;
            }
            Token::Ident(word) => {
                // `a::{self, B}` names `a` itself; a leading `self` is the current module.
                if word != "self" || prefix.is_empty() {
                    prefix.push(word.clone());
                }
                i += 1;
                if toks.get(i).map(|t| &t.0) != Some(&Token::PathSep) {
                    if toks.get(i).map(|t| &t.0) == Some(&Token::Ident("as".into())) {
                        continue;
                    }
                    out.push((prefix, *line));
                    return i;
                }
            }
            Token::Punct('*') => {
                out.push((prefix, *line));
                return i + 1;
            }
            Token::Punct('{') => {
                i += 1;
                while let Some((tok, _)) = toks.get(i) {
                    match tok {
                        Token::Punct('}') => return i + 1,
                        Token::Punct(',') => i += 1,
                        _ => i = use_tree(toks, i, prefix.clone(), out),
                    }
                }
                return i;
            }
            _ => {
                out.push((prefix, *line));
                return i;
            }
        }
    }
    i
}

/// The absolute module path `path` starts with, if it is a path inside this crate.
fn absolute(module: &[String], path: &[String]) -> Option<Vec<String>> {
    let (mut base, rest): (Vec<String>, &[String]) = match path.first()?.as_str() {
        // Binaries name the library by its crate name.
        "crate" | "switchyard" => (Vec::new(), &path[1..]),
        "self" => (module.to_vec(), &path[1..]),
        "super" => (module.to_vec(), path),
        _ => return None,
    };
    let mut rest = rest.iter().peekable();
    while rest.peek().is_some_and(|s| *s == "super") {
        base.pop()?;
        rest.next();
    }
    base.extend(rest.cloned());
    Some(renamed(base))
}

fn renamed(mut path: Vec<String>) -> Vec<String> {
    for (old, new) in RENAMED {
        let old: Vec<&str> = old.split("::").collect();
        if path.len() >= old.len() && path.iter().zip(&old).all(|(a, b)| a == b) {
            path.splice(..old.len(), new.split("::").map(String::from));
        }
    }
    path
}

/// Turn source files into imports between modules.
fn analyse(files: &[SourceFile]) -> Analysis {
    let modules: BTreeSet<ModPath> = files.iter().map(|f| f.module.clone()).collect();
    let mut analysis = Analysis {
        edges: Vec::new(),
        uses: Vec::new(),
    };
    for file in files {
        let (code, _) = without_tests(&code_only(&file.text));
        for (path, line) in paths(&code) {
            let at = format!("{}:{line}", file.name);
            let Some(target) = absolute(&file.module, &path) else {
                analysis.uses.push((file.module.clone(), Use { path, at }));
                continue;
            };
            // The longest module the path runs through; a path to an item of the crate root
            // (none today) names no module.
            let to = (1..=target.len())
                .rev()
                .map(|n| target[..n].to_vec())
                .find(|m| modules.contains(m));
            if let Some(to) = to.filter(|to| *to != file.module) {
                analysis.edges.push(Edge {
                    from: file.module.clone(),
                    to,
                    at,
                });
            }
        }
    }
    analysis
}

/// The router crate's sources, test-only files left out.
fn router_sources() -> Vec<SourceFile> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&root, &root, &mut files);
    // Files declared `#[cfg(test)] mod name;` (and everything below them) are test code.
    let mut test_only = BTreeSet::new();
    for file in &files {
        let (_, children) = without_tests(&code_only(&file.text));
        for child in children {
            let mut m = file.module.clone();
            m.push(child);
            test_only.insert(m);
        }
    }
    files.retain(|f| !test_only.iter().any(|t| f.module.starts_with(t)));
    for file in &mut files {
        file.module = renamed(file.module.clone());
    }
    files
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<SourceFile>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(root, &path, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let rel = path.strip_prefix(root).expect("under src/");
        let mut module: ModPath = rel
            .with_extension("")
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        match module.first().map(String::as_str) {
            // The crate root declares modules and holds no imports.
            Some("lib") if module.len() == 1 => continue,
            // The binaries: `switchyard` itself and the mock engine's.
            Some("main") | Some("bin") => module = vec!["main".to_string()],
            _ => {
                if module.last().is_some_and(|s| s == "mod") {
                    module.pop();
                }
            }
        }
        out.push(SourceFile {
            module,
            name: format!("src/{}", rel.display()),
            text: std::fs::read_to_string(&path).expect("readable source"),
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Rules

fn layer_of(top: &str) -> Option<(usize, &'static str)> {
    LAYERS
        .iter()
        .enumerate()
        .find(|(_, (_, modules))| modules.contains(&top))
        .map(|(i, (name, _))| (i, *name))
}

/// Imports of a module in a higher layer, and top-level modules in no layer.
fn layer_violations(a: &Analysis) -> Vec<String> {
    let mut problems = BTreeSet::new();
    for e in &a.edges {
        let (from, to) = (&e.from[0], &e.to[0]);
        let (Some((from_layer, from_name)), Some((to_layer, to_name))) =
            (layer_of(from), layer_of(to))
        else {
            for m in [from, to].into_iter().filter(|m| layer_of(m).is_none()) {
                problems.insert(format!(
                    "top-level module `{m}` is in no layer: add it to LAYERS in \
                     tests/architecture.rs and to the list in docs/architecture.md (Layers)"
                ));
            }
            continue;
        };
        if to_layer > from_layer {
            problems.insert(format!(
                "{}: `{}` (layer {from_name}) imports `{}` (layer {to_name}, above it); \
                 move what it needs down, or pass it in from the wiring (docs/architecture.md, \
                 Layers)",
                e.at,
                e.from.join("::"),
                e.to.join("::"),
            ));
        }
    }
    problems.into_iter().collect()
}

/// Cycles between top-level modules, each with the imports that close it.
fn top_level_cycles(a: &Analysis) -> Vec<String> {
    let edges = a.edges.iter().filter(|e| e.from[0] != e.to[0]).map(|e| {
        (
            vec![e.from[0].clone()],
            vec![e.to[0].clone()],
            e.at.as_str(),
        )
    });
    cycles("top-level modules", edges)
}

/// Cycles between the files of one top-level module (a file and its ancestors excepted).
fn internal_cycles(a: &Analysis) -> Vec<String> {
    let edges = a.edges.iter().filter(|e| {
        e.from[0] == e.to[0]
            && !INTERNAL_CYCLES_UNCHECKED.contains(&e.from[0].as_str())
            && !e.from.starts_with(&e.to)
            && !e.to.starts_with(&e.from)
    });
    cycles(
        "files of one module",
        edges.map(|e| (e.from.clone(), e.to.clone(), e.at.as_str())),
    )
}

/// Strongly connected components of more than one module, each with one import per edge.
fn cycles<'a>(what: &str, edges: impl Iterator<Item = (ModPath, ModPath, &'a str)>) -> Vec<String> {
    let mut graph: BTreeMap<ModPath, BTreeMap<ModPath, &str>> = BTreeMap::new();
    for (from, to, at) in edges {
        graph.entry(to.clone()).or_default();
        graph.entry(from).or_default().entry(to).or_insert(at);
    }
    strongly_connected(&graph)
        .into_iter()
        .filter(|scc| scc.len() > 1)
        .map(|scc| {
            let members: BTreeSet<&ModPath> = scc.iter().collect();
            let mut message = format!(
                "cycle between {what} {} (their imports of each other):",
                scc.iter()
                    .map(|m| format!("`{}`", m.join("::")))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            for from in &scc {
                for (to, at) in graph[from].iter().filter(|(to, _)| members.contains(to)) {
                    message.push_str(&format!(
                        "\n    {} -> {} ({at})",
                        from.join("::"),
                        to.join("::")
                    ));
                }
            }
            message
        })
        .collect()
}

/// Tarjan's algorithm (recursion depth at most the number of modules: a few hundred).
fn strongly_connected<'g>(
    graph: &'g BTreeMap<ModPath, BTreeMap<ModPath, &'g str>>,
) -> Vec<Vec<ModPath>> {
    struct State<'g> {
        graph: &'g BTreeMap<ModPath, BTreeMap<ModPath, &'g str>>,
        index: BTreeMap<&'g ModPath, usize>,
        low: BTreeMap<&'g ModPath, usize>,
        stack: Vec<&'g ModPath>,
        on_stack: BTreeSet<&'g ModPath>,
        found: Vec<Vec<ModPath>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g ModPath) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph[v].keys() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            component.sort();
            s.found.push(component);
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.found
}

/// Uses of an HTTP crate inside the mesh.
fn mesh_http_uses(a: &Analysis) -> Vec<String> {
    a.uses
        .iter()
        .filter(|(module, u)| module[0] == "mesh" && HTTP_CRATES.contains(&u.path[0].as_str()))
        .map(|(module, u)| {
            format!(
                "{}: `{}` uses `{}`: the mesh knows nothing of HTTP; let the wiring pass in \
                 what needs it (as `HealthCheck` is)",
                u.at,
                module.join("::"),
                u.path.join("::")
            )
        })
        .collect()
}

fn assert_none(rule: &str, problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{rule}: {} problem(s)\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The router's sources

#[test]
fn imports_point_down_the_layers() {
    assert_none("layers", layer_violations(&analyse(&router_sources())));
}

#[test]
fn no_cycles_between_top_level_modules() {
    assert_none(
        "top-level cycles",
        top_level_cycles(&analyse(&router_sources())),
    );
}

#[test]
fn no_cycles_between_the_files_of_a_module() {
    assert_none(
        "module-internal cycles",
        internal_cycles(&analyse(&router_sources())),
    );
}

#[test]
fn the_mesh_knows_nothing_of_http() {
    assert_none("mesh and HTTP", mesh_http_uses(&analyse(&router_sources())));
}

#[test]
fn every_source_module_has_a_layer_and_every_layer_a_module() {
    let files = router_sources();
    let tops: BTreeSet<&str> = files.iter().map(|f| f.module[0].as_str()).collect();
    let unplaced: Vec<_> = tops.iter().filter(|t| layer_of(t).is_none()).collect();
    assert!(unplaced.is_empty(), "modules in no layer: {unplaced:?}");
    let listed: Vec<&str> = LAYERS.iter().flat_map(|(_, m)| m.iter().copied()).collect();
    let gone: Vec<_> = listed.iter().filter(|m| !tops.contains(*m)).collect();
    assert!(gone.is_empty(), "layered modules with no source: {gone:?}");
    let distinct: BTreeSet<_> = listed.iter().collect();
    assert_eq!(distinct.len(), listed.len(), "a module is in two layers");
}

/// docs/architecture.md's "Layers" list names the same layers, in order, with the same modules.
#[test]
fn the_documented_layers_are_the_checked_ones() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md"))
            .expect("docs/architecture.md");
    let section = doc
        .split("\n## Layers\n")
        .nth(1)
        .expect("docs/architecture.md has a `## Layers` section")
        .split("\n## ")
        .next()
        .unwrap_or_default();
    // `N. **name**: `a`, `b` — why`
    let documented: Vec<(String, Vec<String>)> = section
        .lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once(". **")?;
            let (name, rest) = rest.split_once("**:")?;
            let modules = rest.split(" — ").next().unwrap_or_default();
            let modules = modules
                .split('`')
                .skip(1)
                .step_by(2)
                .map(String::from)
                .collect();
            Some((name.to_string(), modules))
        })
        .collect();
    let checked: Vec<(String, Vec<String>)> = LAYERS
        .iter()
        .map(|(name, modules)| {
            (
                name.to_string(),
                modules.iter().map(|m| m.to_string()).collect(),
            )
        })
        .collect();
    assert_eq!(
        documented, checked,
        "docs/architecture.md (Layers) vs LAYERS"
    );
}

// ---------------------------------------------------------------------------------------------
// The checker itself, on made-up sources

fn file(module: &str, text: &str) -> SourceFile {
    SourceFile {
        module: module.split("::").map(String::from).collect(),
        name: format!("src/{}.rs", module.replace("::", "/")),
        text: text.to_string(),
    }
}

fn targets(module: &str, text: &str) -> Vec<String> {
    let mut files = vec![file(module, text)];
    // Every module the snippets may name.
    for m in [
        "mesh",
        "mesh::lease",
        "mesh::backend",
        "relay",
        "relay::client",
        "record",
        "error",
        "api",
    ] {
        if m != module {
            files.push(file(m, ""));
        }
    }
    let mut found: Vec<String> = analyse(&files)
        .edges
        .into_iter()
        .filter(|e| e.from.join("::") == module)
        .map(|e| e.to.join("::"))
        .collect();
    found.sort();
    found.dedup();
    found
}

#[test]
fn the_scanner_reads_use_trees_and_paths_and_nothing_else() {
    // (module, source, modules it imports)
    let cases: &[(&str, &str, &[&str])] = &[
        ("relay", "use crate::mesh::Lease;", &["mesh"]),
        ("relay", "use crate::mesh::lease::Lease;", &["mesh::lease"]),
        (
            "relay",
            "use crate::{mesh::{self, Lease}, record::RequestCtx};",
            &["mesh", "record"],
        ),
        ("relay", "pub(crate) use crate::mesh::*;", &["mesh"]),
        ("relay", "use crate::mesh::Lease as L;", &["mesh"]),
        ("relay", "fn f() { crate::record::live(); }", &["record"]),
        ("relay::client", "use super::super::mesh::Lease;", &["mesh"]),
        (
            "mesh::backend",
            "use super::lease::Lease;",
            &["mesh::lease"],
        ),
        (
            "mesh::backend",
            "use super::{lease, Outcome};",
            &["mesh", "mesh::lease"],
        ),
        ("mesh", "use self::lease::Lease;", &["mesh::lease"]),
        ("relay", "use crate::api::error::ApiError;", &["api"]),
        // Not imports: comments, doc links, strings, raw strings, test code, other crates.
        (
            "relay",
            "// crate::mesh::Lease\n/* crate::record /* nested */ crate::mesh */",
            &[],
        ),
        ("relay", "/// [`crate::mesh::Lease`]\nfn f() {}", &[]),
        (
            "relay",
            r##"const A: &str = "crate::mesh"; const B: &str = r#"crate::record"#;"##,
            &[],
        ),
        (
            "relay",
            "fn f<'a>(c: char) -> bool { c == '\"' } const S: &str = \"crate::mesh\";",
            &[],
        ),
        (
            "relay",
            "#[cfg(test)]\nmod tests { use crate::mesh::Lease; }",
            &[],
        ),
        (
            "relay",
            "#[cfg(test)]\nuse crate::mesh::Lease;\nuse crate::record::X;",
            &["record"],
        ),
        ("relay", "use awc::Client; use std::sync::Arc;", &[]),
    ];
    for (module, text, expected) in cases {
        assert_eq!(targets(module, text), *expected, "{module}: {text}");
    }
}

#[test]
fn forbidden_imports_and_cycles_are_reported() {
    let files = [
        // The relay reaching up into a handler module.
        file("relay", "use crate::api::chat::ChatFacts;"),
        file("api", "use crate::relay::Forwarded;"),
        file("api::chat", ""),
        // A cycle inside one layer.
        file("jobs", "use crate::media::VideoSettings;"),
        file("media", "fn f() { crate::jobs::now_ms(); }"),
        // A cycle between files of one module.
        file("mesh", ""),
        file("mesh::endpoint", "use super::backend::Finished;"),
        file(
            "mesh::backend",
            "use super::endpoint::Endpoint;\nuse awc::Client;",
        ),
        // A module nobody placed.
        file("gadgets", "use crate::mesh::Lease;"),
    ];
    let a = analyse(&files);
    let layers = layer_violations(&a).join("\n");
    assert!(
        layers.contains(
            "src/relay.rs:1: `relay` (layer relay) imports `api::chat` (layer api, above it)"
        ),
        "{layers}"
    );
    assert!(
        layers.contains("top-level module `gadgets` is in no layer"),
        "{layers}"
    );
    let cycles = top_level_cycles(&a).join("\n");
    assert!(cycles.contains("`jobs`, `media`"), "{cycles}");
    assert!(cycles.contains("`api`, `relay`"), "{cycles}");
    let internal = internal_cycles(&a).join("\n");
    assert!(
        internal.contains("mesh::backend -> mesh::endpoint (src/mesh/backend.rs:1)"),
        "{internal}"
    );
    let http = mesh_http_uses(&a).join("\n");
    assert!(
        http.contains("src/mesh/backend.rs:2: `mesh::backend` uses `awc::Client`"),
        "{http}"
    );
}
