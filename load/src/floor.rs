//! `floor-proxy`: the least an actix-web server relaying through awc can cost. It forwards
//! each request's method, path, body and `content-type` to one upstream and relays the
//! status, `content-type` and body back: no JSON, no routing, no log, no metrics, no
//! middleware. Benches run it beside switchyard and nginx `proxy_pass` in one run, so the
//! share of a request's cost that belongs to the HTTP crates the router is built on (actix-web,
//! awc) is measured rather than guessed (docs/benchmarks.md, "The floor of the crates").

use std::io::Write as _;

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use anyhow::{bail, Context};
use clap::Args;

/// Bodies the floor relays are small fixed completions; a bound keeps a stray answer from
/// growing without limit.
const MAX_BODY: usize = 4 << 20;

#[derive(Args, Debug, Clone)]
pub struct FloorArgs {
    /// Where every request goes, e.g. http://127.0.0.1:9000 (the request's path is appended).
    #[arg(long)]
    pub upstream: String,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// 0 = a free port (printed when ready).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// actix-web workers (switchyard's `WORKERS` in the same bench).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    #[arg(long)]
    pub allow_non_loopback: bool,
}

struct Upstream {
    base: String,
    client: awc::Client,
}

async fn relay(req: HttpRequest, body: web::Bytes, upstream: web::Data<Upstream>) -> HttpResponse {
    let url = format!("{}{}", upstream.base, req.uri());
    let mut outbound = upstream.client.request(req.method().clone(), url);
    if let Some(ct) = req.headers().get(CONTENT_TYPE) {
        outbound = outbound.insert_header((CONTENT_TYPE, ct.clone()));
    }
    let mut answer = match outbound.send_body(body).await {
        Ok(answer) => answer,
        Err(e) => return HttpResponse::BadGateway().body(e.to_string()),
    };
    let bytes = match answer.body().limit(MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(e) => return HttpResponse::BadGateway().body(e.to_string()),
    };
    let mut reply = HttpResponse::build(answer.status());
    if let Some(ct) = answer.headers().get(CONTENT_TYPE) {
        reply.insert_header((CONTENT_TYPE, ct.clone()));
    }
    reply.body(bytes)
}

pub fn run_floor(args: FloorArgs) -> anyhow::Result<()> {
    if !crate::guard::is_loopback(&args.host) && !args.allow_non_loopback {
        bail!(
            "--host {:?} is not loopback (pass --allow-non-loopback to mean it)",
            args.host
        );
    }
    let base = args.upstream.trim_end_matches('/').to_string();
    if !base.starts_with("http://") {
        bail!("--upstream must be an http:// URL, got {:?}", args.upstream);
    }
    let system = actix_rt::System::new();
    system.block_on(async move {
        // One awc client (and so one keep-alive pool) per worker, as switchyard has.
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(Upstream {
                    base: base.clone(),
                    client: awc::Client::default(),
                }))
                .default_service(web::to(relay))
        })
        .workers(args.workers.max(1))
        .bind((args.host.as_str(), args.port))
        .with_context(|| format!("binding {}:{}", args.host, args.port))?;
        let addr = server
            .addrs()
            .first()
            .copied()
            .context("the server bound no address")?;
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "switchyard-load floor-proxy ready: http://{addr}")?;
            out.flush()?;
        }
        server.run().await.context("floor-proxy")
    })
}
