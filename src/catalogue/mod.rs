//! The self-hosted model catalogue: 169 open models with the files to deploy each one.
//!
//! `catalogue/models.yaml` is embedded in the binary and parsed once. Each entry renders into a
//! Dockerfile (its engine's template from `catalogue/templates/` plus the entry's arguments), a
//! Kubernetes Deployment + Service, and a `models.yaml` snippet that routes the router to it.
//! See docs/catalogue.md.

mod cli;
mod entry;
mod quantity;
mod render;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use anyhow::{anyhow, Context};
use serde::Deserialize;

pub use cli::{run, Command, Format};
pub use entry::{
    k8s_name, validate, Category, Engine, EngineArgs, Entry, Instance, ModelType, Resources,
    INSTANCES,
};
pub use render::{
    render_dockerfile, render_manifest, render_models_yaml, render_server, vllm_args,
};

/// An entry as the platform's catalogue publishes it in JSON (seed 002): its fields plus the
/// full `dockerfile` text, rendered from its engine's template.
#[derive(serde::Serialize)]
pub struct Published<'a> {
    #[serde(flatten)]
    pub entry: &'a Entry,
    pub dockerfile: String,
}

impl<'a> Published<'a> {
    pub fn of(entry: &'a Entry) -> Published<'a> {
        Published {
            entry,
            dockerfile: render_dockerfile(entry),
        }
    }
}

/// The catalogue data, compiled in so the binary needs no files at run time.
pub const CATALOGUE_YAML: &str = include_str!("../../catalogue/models.yaml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    entries: Vec<Entry>,
}

/// Parses and validates catalogue YAML; the error lists every problem found.
pub fn parse(yaml: &str) -> anyhow::Result<Vec<Entry>> {
    let file: CatalogueFile =
        serde_yaml::from_str(yaml).context("catalogue YAML does not parse")?;
    let problems = validate(&file.entries);
    if problems.is_empty() {
        Ok(file.entries)
    } else {
        Err(anyhow!(
            "catalogue has {} problem(s):\n  {}",
            problems.len(),
            problems.join("\n  ")
        ))
    }
}

/// The embedded catalogue, parsed and validated on first use.
pub fn entries() -> anyhow::Result<&'static [Entry]> {
    static ENTRIES: OnceLock<Result<Vec<Entry>, String>> = OnceLock::new();
    // anyhow::Error is not Clone, so the cached failure is kept as its message.
    match ENTRIES.get_or_init(|| parse(CATALOGUE_YAML).map_err(|e| format!("{e:#}"))) {
        Ok(entries) => Ok(entries),
        Err(message) => Err(anyhow!("{message}")),
    }
}

/// The entry with this id, or an error naming it (and near matches).
pub fn find(id: &str) -> anyhow::Result<&'static Entry> {
    let all = entries()?;
    if let Some(entry) = all.iter().find(|e| e.id == id) {
        return Ok(entry);
    }
    let needle = id.to_lowercase();
    let near: Vec<&str> = all
        .iter()
        .filter(|e| e.id.contains(&needle))
        .map(|e| e.id.as_str())
        .take(5)
        .collect();
    if near.is_empty() {
        Err(anyhow!(
            "unknown catalogue id `{id}` (see `switchyard catalogue list`)"
        ))
    } else {
        Err(anyhow!(
            "unknown catalogue id `{id}`; did you mean: {}",
            near.join(", ")
        ))
    }
}

/// Entries per category.
pub fn count_by_category(entries: &[Entry]) -> BTreeMap<Category, usize> {
    entries.iter().fold(BTreeMap::new(), |mut m, e| {
        *m.entry(e.category).or_default() += 1;
        m
    })
}

/// Entries per engine.
pub fn count_by_engine(entries: &[Entry]) -> BTreeMap<Engine, usize> {
    entries.iter().fold(BTreeMap::new(), |mut m, e| {
        *m.entry(e.engine).or_default() += 1;
        m
    })
}

#[cfg(test)]
mod tests;
