//! `.env.example` lists every environment variable the router reads: found by scanning `src/`
//! for the ways it reads them (`vars.get("…")`, `std::env::var("…")`, clap's `env = "…"`, the
//! settings helpers `num("…")`/`text("…")`/`bool_var(vars, "…")`, lists iterated with `for var in [...]`) and the
//! `${VAR}` references of the shipped `config/*.yaml`.

use std::collections::BTreeSet;
use std::path::Path;

fn is_env_name(s: &str) -> bool {
    s.len() >= 2
        && s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Quoted upper-case literals on `line` whose preceding text reads an environment variable.
fn names_in_line(line: &str, out: &mut BTreeSet<String>) {
    const READS: &[&str] = &[
        ".get(",
        "env::var(",
        "env::var_os(",
        "env = ",
        "num(",
        "text(",
        "bool_var(vars, ",
    ];
    let in_var_list = line.trim_start().starts_with("for var in [");
    let mut rest = line;
    let mut before = String::new();
    while let Some(start) = rest.find('"') {
        let (head, tail) = rest.split_at(start);
        before.push_str(head);
        let tail = &tail[1..];
        let Some(end) = tail.find('"') else { break };
        let literal = &tail[..end];
        let prefix = before.trim_end();
        let read = READS.iter().any(|r| prefix.ends_with(r.trim_end()));
        if is_env_name(literal) && (read || in_var_list) {
            out.insert(literal.to_string());
        }
        before.push('"');
        before.push_str(literal);
        before.push('"');
        rest = &tail[end + 1..];
    }
}

fn scan(dir: &Path, out: &mut BTreeSet<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            // The catalogue writes other programs' environment (Dockerfiles, manifests).
            if !path.ends_with("catalogue") {
                scan(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            let text = std::fs::read_to_string(&path).expect("read source");
            // Unit tests (at the end of a file) make up variables of their own.
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for line in code.lines() {
                names_in_line(line, out);
            }
        }
    }
}

/// `${NAME}` / `${NAME:-default}` on uncommented lines of the shipped configuration.
fn config_refs(dir: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir)
        .expect("config dir")
        .filter_map(Result::ok)
    {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            for part in line.split("${").skip(1) {
                let name: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if is_env_name(&name) {
                    out.insert(name);
                }
            }
        }
    }
}

/// Names listed in `.env.example`, as `NAME=` or `# NAME=`.
fn listed(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim_start_matches('#').trim();
            let (name, _) = l.split_once('=')?;
            is_env_name(name).then(|| name.to_string())
        })
        .collect()
}

#[test]
fn env_example_lists_every_variable_the_router_reads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut read = BTreeSet::new();
    scan(&root.join("src"), &mut read);
    // The scan must find the known ones, or it has gone blind.
    for known in [
        "PORT",
        "DATABASE_URL",
        "API_KEYS",
        "ADMIN_API_KEYS",
        "VIDEO_CLAIM_SECS",
        "LOG_FORMAT",
        "REPLICA_ID",
    ] {
        assert!(read.contains(known), "scan missed {known}: {read:?}");
    }
    config_refs(&root.join("config"), &mut read);
    let text = std::fs::read_to_string(root.join(".env.example")).expect(".env.example");
    let listed = listed(&text);
    let missing: Vec<&String> = read.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "read by the router but missing from .env.example: {missing:?}"
    );
    // Names built at run time, and the provider variables HybridInference's README lists.
    for pattern in [
        "_RPM_LIMIT",
        "_TPM_LIMIT",
        "RUST_LOG",
        "DEEPSEEK_API_KEY",
        "GEMINI_API_KEY",
        "LLAMA_API_KEY",
        "LLAMA_BASE_URL",
    ] {
        assert!(text.contains(pattern), ".env.example lacks {pattern}");
    }
}

#[test]
fn the_scanner_recognises_each_way_of_reading() {
    let mut found = BTreeSet::new();
    for line in [
        r#"let v = vars.get("ALPHA_ONE").map(|v| v);"#,
        r#"std::env::var("BETA").ok()"#,
        r#"if std::env::var_os("GAMMA").is_none() {"#,
        r#"#[arg(long, env = "DELTA", default_value = "x")]"#,
        r#"if let Some(v) = num("EPSILON", 1.0) {"#,
        r#"m.x = text("ZETA").map(|s| s);"#,
        r#"for var in ["ETA", "THETA"] {"#,
        r#"headers.get("content-type"); let s = "NOT_READ";"#,
    ] {
        names_in_line(line, &mut found);
    }
    let expected: BTreeSet<String> = [
        "ALPHA_ONE",
        "BETA",
        "GAMMA",
        "DELTA",
        "EPSILON",
        "ZETA",
        "ETA",
        "THETA",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(found, expected);
}
