//! `switchyard catalogue ...`: list, show and render catalogue entries.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::Context;

use super::{entries, find, render, Category, Engine, Entry};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// List entries, optionally filtered by category and engine.
    List {
        /// llm, multimodal, embedding, audio, video, image or nlp.
        #[arg(long)]
        category: Option<String>,
        /// vllm, transformers, whisper, tts-engine, video-engine or custom.
        #[arg(long)]
        engine: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Print one entry as YAML.
    Show { id: String },
    /// Print the entry's Dockerfile.
    Dockerfile { id: String },
    /// Print the entry's Kubernetes Deployment and Service.
    Manifest { id: String },
    /// Print a router models.yaml document that routes to the deployed entry.
    ModelsYaml {
        id: String,
        /// Where the router reaches the model server, e.g. http://qwen2-5-7b-instruct:8000/v1.
        #[arg(long)]
        base_url: String,
    },
    /// Write the entry's build context (Dockerfile and, for the Python engines, server.py) to a directory.
    Context {
        id: String,
        #[arg(long)]
        out: PathBuf,
    },
}

/// Runs one catalogue command, printing to stdout.
pub fn run(cmd: Command) -> anyhow::Result<()> {
    let text = match cmd {
        Command::List {
            category,
            engine,
            format,
        } => list(category.as_deref(), engine.as_deref(), format)?,
        Command::Show { id } => serde_yaml::to_string(find(&id)?)?,
        Command::Dockerfile { id } => render::render_dockerfile(find(&id)?),
        Command::Manifest { id } => render::render_manifest(find(&id)?),
        Command::ModelsYaml { id, base_url } => render::render_models_yaml(find(&id)?, &base_url),
        Command::Context { id, out } => write_context(find(&id)?, &out)?,
    };
    print(&text)
}

fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // A closed pipe (`... | head`) is the reader's choice, not a failure.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

fn list(category: Option<&str>, engine: Option<&str>, format: Format) -> anyhow::Result<String> {
    let category: Option<Category> = category
        .map(str::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let engine: Option<Engine> = engine
        .map(str::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let selected: Vec<&Entry> = entries()?
        .iter()
        .filter(|e| {
            category.is_none_or(|c| e.category == c) && engine.is_none_or(|g| e.engine == g)
        })
        .collect();
    match format {
        Format::Json => {
            let published: Vec<super::Published<'_>> =
                selected.iter().map(|e| super::Published::of(e)).collect();
            Ok(serde_json::to_string_pretty(&published)? + "\n")
        }
        Format::Table => Ok(table(&selected)),
    }
}

fn table(entries: &[&Entry]) -> String {
    let header = [
        "ID", "CATEGORY", "TYPE", "ENGINE", "GPU", "INSTANCE", "SIZE",
    ];
    let rows: Vec<[String; 7]> = entries
        .iter()
        .map(|e| {
            [
                e.id.clone(),
                e.category.to_string(),
                e.model_type.to_string(),
                e.engine.to_string(),
                e.default_resources.gpu.to_string(),
                e.recommended_instance.clone(),
                e.model_size.clone(),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in &rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out += &format!("{} entries\n", rows.len());
    out
}

fn write_context(e: &Entry, out: &std::path::Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut written = vec![out.join("Dockerfile")];
    std::fs::write(&written[0], render::render_dockerfile(e))
        .with_context(|| format!("writing {}", written[0].display()))?;
    if let Some(server) = render::render_server(e) {
        let path = out.join("server.py");
        std::fs::write(&path, server).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written
        .iter()
        .map(|p| format!("wrote {}\n", p.display()))
        .collect())
}
