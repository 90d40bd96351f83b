//! Runs a plan: one OS thread per generator thread, each with its own actix runtime and awc
//! client (awc is `!Send`), its own stats, and a share of the arrivals or connections. The
//! calling thread draws the progress bar.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::plan::{Mode, OpenSchedule, Plan};
use crate::scenario::{execute, Picker, Prepared};
use crate::stats::{Outcome, ThreadStats};

/// Counters shared with the progress bar (relaxed atomics: a display, not a measurement).
#[derive(Default)]
pub struct Progress {
    pub issued: AtomicU64,
    pub done: AtomicU64,
    pub errors: AtomicU64,
    /// Closed loop with a request count: the shared budget of sends.
    pub claimed: AtomicU64,
    pub stop: AtomicBool,
}

pub struct RunResult {
    pub stats: ThreadStats,
    /// When the last request finished, from the start.
    pub wall: Duration,
    pub bucket: Duration,
    pub started_unix_ms: u64,
}

/// The width of one throughput-over-time bucket: about 100 points per chart.
pub fn bucket_for(plan: &Plan) -> Duration {
    let expected = match (plan.mode, plan.requests) {
        (Mode::Open { rate, .. }, Some(n)) => {
            Duration::from_secs_f64(n as f64 / rate).min(plan.duration)
        }
        (Mode::Closed { .. }, Some(_)) if plan.duration >= crate::plan::MAX_DURATION => {
            Duration::from_secs(10)
        }
        _ => plan.duration,
    };
    let ms = (expected.as_millis() / 100).clamp(100, 10_000) as u64;
    Duration::from_millis(ms)
}

pub fn run(plan: &Plan, quiet: bool) -> anyhow::Result<RunResult> {
    let prepared: Arc<Vec<Prepared>> = Arc::new(
        plan.scenarios
            .iter()
            .map(|s| Prepared::new(s, &plan.targets))
            .collect(),
    );
    let progress = Arc::new(Progress::default());
    stop_on_ctrl_c(progress.clone());
    let bucket = bucket_for(plan);
    let started_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    // A common start slightly ahead, so every thread's runtime is up before the first arrival.
    let t0 = Instant::now() + Duration::from_millis(50);
    let mut handles = Vec::with_capacity(plan.threads);
    for k in 0..plan.threads {
        let plan = plan.clone();
        let prepared = prepared.clone();
        let progress = progress.clone();
        let h = std::thread::Builder::new()
            .name(format!("load-{k}"))
            .spawn(move || thread_main(k, &plan, prepared, progress, t0, bucket))?;
        handles.push(h);
    }

    let bar = progress_bar(plan, quiet);
    while handles.iter().any(|h| !h.is_finished()) {
        std::thread::sleep(Duration::from_millis(200));
        update_bar(&bar, plan, &progress, t0);
    }
    bar.finish_and_clear();

    let mut stats = ThreadStats::new(plan.scenarios.len());
    let mut wall = Duration::ZERO;
    for h in handles {
        let (s, last) = h
            .join()
            .map_err(|_| anyhow::anyhow!("a generator thread panicked"))??;
        stats.merge(&s);
        wall = wall.max(last);
    }
    Ok(RunResult {
        stats,
        wall,
        bucket,
        started_unix_ms,
    })
}

/// First Ctrl-C: stop sending, let in-flight requests drain, still write the reports.
/// Second Ctrl-C: leave at once.
fn stop_on_ctrl_c(progress: Arc<Progress>) {
    let spawned = std::thread::Builder::new()
        .name("load-signal".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if tokio::signal::ctrl_c().await.is_ok() {
                    progress.stop.store(true, Ordering::Relaxed);
                    eprintln!("\nstopping: in-flight requests drain, then the report (Ctrl-C again to quit)");
                }
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            });
        });
    if spawned.is_err() {
        eprintln!(
            "switchyard-load: no Ctrl-C handler (thread spawn failed); Ctrl-C will quit at once"
        );
    }
}

fn progress_bar(plan: &Plan, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let (len, template) = match (plan.mode, plan.requests) {
        (Mode::Open { rate, .. }, _) => (
            OpenSchedule::total(rate, plan.duration, plan.requests),
            "{elapsed_precise} [{bar:30}] {pos}/{len} requests  {msg}",
        ),
        (_, Some(n)) => (
            n,
            "{elapsed_precise} [{bar:30}] {pos}/{len} requests  {msg}",
        ),
        _ => (
            plan.duration.as_millis() as u64,
            "{elapsed_precise} [{bar:30}] {percent:>3}%  {msg}",
        ),
    };
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn update_bar(bar: &ProgressBar, plan: &Plan, p: &Progress, t0: Instant) {
    let done = p.done.load(Ordering::Relaxed);
    let errors = p.errors.load(Ordering::Relaxed);
    let in_flight = p.issued.load(Ordering::Relaxed).saturating_sub(done);
    let secs = Instant::now().saturating_duration_since(t0).as_secs_f64();
    let rps = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    match (plan.mode, plan.requests) {
        (Mode::Open { .. }, _) | (_, Some(_)) => bar.set_position(done),
        _ => bar.set_position(
            (Instant::now().saturating_duration_since(t0).as_millis() as u64)
                .min(plan.duration.as_millis() as u64),
        ),
    }
    bar.set_message(format!(
        "{done} done  {errors} errors  {in_flight} in flight  {rps:.0}/s"
    ));
}

fn client(connections: u32, plan: &Plan) -> awc::Client {
    let connector = awc::Connector::new()
        .limit(connections as usize + 16)
        .timeout(Duration::from_secs(10))
        .conn_keep_alive(Duration::from_secs(120))
        // Long-lived connections: reconnect storms would be the tool's noise, not the server's.
        .conn_lifetime(Duration::from_secs(24 * 3600));
    // The whole exchange is bounded by one timer in `Ctx::one`; a second one per request inside
    // awc would only cost the generator.
    let mut builder = awc::Client::builder()
        .connector(connector)
        .disable_timeout()
        .disable_redirects();
    if let Some(key) = &plan.api_key {
        builder = builder.add_default_header(("authorization", format!("Bearer {key}")));
    }
    for (name, value) in &plan.headers {
        builder = builder.add_default_header((name.as_str(), value.as_str()));
    }
    builder.finish()
}

struct Ctx {
    plan: Plan,
    prepared: Arc<Vec<Prepared>>,
    progress: Arc<Progress>,
    client: awc::Client,
    stats: RefCell<ThreadStats>,
    t0: Instant,
    bucket: Duration,
    in_flight: Cell<u64>,
    last_done: Cell<Duration>,
}

impl Ctx {
    /// Send one request scheduled at `sched` and fold its outcome in.
    async fn one(&self, idx: usize, sched: Instant) {
        self.in_flight.set(self.in_flight.get() + 1);
        self.progress.issued.fetch_add(1, Ordering::Relaxed);
        let sent = Instant::now();
        let p = &self.prepared[idx];
        let outcome =
            match actix_rt::time::timeout(self.plan.timeout, execute(p, &self.client, sched)).await
            {
                Ok(o) => o,
                Err(_) => Outcome::fail(None, "timeout"),
            };
        let end = Instant::now();
        if outcome.error.is_some() {
            self.progress.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.progress.done.fetch_add(1, Ordering::Relaxed);
        let at = end.saturating_duration_since(self.t0);
        self.last_done.set(self.last_done.get().max(at));
        self.stats.borrow_mut().scenarios[idx].record(
            outcome,
            end.saturating_duration_since(sched),
            end.saturating_duration_since(sent),
            at,
            self.bucket,
        );
        self.in_flight.set(self.in_flight.get() - 1);
    }
}

fn thread_main(
    k: usize,
    plan: &Plan,
    prepared: Arc<Vec<Prepared>>,
    progress: Arc<Progress>,
    t0: Instant,
    bucket: Duration,
) -> anyhow::Result<(ThreadStats, Duration)> {
    let system = actix_rt::System::new();
    system.block_on(async move {
        let share = match plan.mode {
            Mode::Open { max_in_flight, .. } => Plan::per_thread(max_in_flight, plan.threads, k),
            Mode::Closed { concurrency } => Plan::per_thread(concurrency, plan.threads, k),
        };
        let ctx = Rc::new(Ctx {
            plan: plan.clone(),
            prepared,
            progress,
            client: client(share.max(1), plan),
            stats: RefCell::new(ThreadStats::new(plan.scenarios.len())),
            t0,
            bucket,
            in_flight: Cell::new(0),
            last_done: Cell::new(Duration::ZERO),
        });
        let weights: Vec<u32> = plan.scenarios.iter().map(|s| s.weight).collect();
        let picker = Rc::new(RefCell::new(Picker::new(
            &weights,
            plan.seed.wrapping_add(k as u64),
        )));
        actix_rt::time::sleep_until(t0.into()).await;
        match plan.mode {
            Mode::Open { rate, .. } => open_loop(&ctx, &picker, k, rate, share.max(1)).await,
            Mode::Closed { .. } => closed_loop(&ctx, &picker, k, share).await,
        }
        let unfinished = ctx.in_flight.get();
        let mut stats = ctx.stats.borrow().clone();
        stats.unfinished = unfinished;
        Ok((stats, ctx.last_done.get()))
    })
}

async fn open_loop(
    ctx: &Rc<Ctx>,
    picker: &Rc<RefCell<Picker>>,
    k: usize,
    rate: f64,
    max_in_flight: u32,
) {
    let plan = &ctx.plan;
    let sched = OpenSchedule {
        rate,
        thread: k as u64,
        threads: plan.threads as u64,
        duration: plan.duration,
        requests: plan.requests,
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(max_in_flight as usize));
    let mut j = 0u64;
    while let Some(offset) = sched.due(sched.global_index(j)) {
        if ctx.progress.stop.load(Ordering::Relaxed) {
            break;
        }
        let due = ctx.t0 + offset;
        if due > Instant::now() {
            actix_rt::time::sleep_until(due.into()).await;
        }
        // At the in-flight cap the send waits; its latency still counts from `due`.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        ctx.stats
            .borrow_mut()
            .send_lag
            .record(Instant::now().saturating_duration_since(due));
        let idx = picker.borrow_mut().pick();
        let c = ctx.clone();
        actix_rt::spawn(async move {
            c.one(idx, due).await;
            drop(permit);
        });
        j += 1;
    }
    let deadline = ctx.t0 + plan.duration.min(sched_end(&sched)) + plan.drain;
    let all = slots.acquire_many(max_in_flight);
    let _ = tokio::time::timeout_at(deadline.into(), all).await;
}

/// When the last arrival of a schedule is due (for count-limited runs shorter than duration).
fn sched_end(s: &OpenSchedule) -> Duration {
    match s.requests {
        Some(n) => Duration::from_secs_f64(n as f64 / s.rate),
        None => s.duration,
    }
}

async fn closed_loop(ctx: &Rc<Ctx>, picker: &Rc<RefCell<Picker>>, k: usize, share: u32) {
    let plan = &ctx.plan;
    let end = ctx.t0 + plan.duration;
    let mut loops = Vec::with_capacity(share as usize);
    for i in 0..share {
        let c = ctx.clone();
        let picker = picker.clone();
        let first = ctx.t0 + plan.closed_start(k, i);
        loops.push(actix_rt::spawn(async move {
            if first > Instant::now() {
                actix_rt::time::sleep_until(first.into()).await;
            }
            loop {
                let now = Instant::now();
                if now >= end || c.progress.stop.load(Ordering::Relaxed) {
                    break;
                }
                if let Some(n) = c.plan.requests {
                    if c.progress.claimed.fetch_add(1, Ordering::Relaxed) >= n {
                        break;
                    }
                }
                let idx = picker.borrow_mut().pick();
                c.one(idx, now).await;
            }
        }));
    }
    let deadline = end + plan.drain;
    let all = futures_util::future::join_all(loops);
    let _ = tokio::time::timeout_at(deadline.into(), all).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Kind, ScenarioSpec};

    #[test]
    fn buckets_give_about_a_hundred_points() {
        let mut plan = Plan {
            target: "http://127.0.0.1:1".into(),
            targets: vec!["http://127.0.0.1:1".into()],
            mode: Mode::Closed { concurrency: 1 },
            duration: Duration::from_secs(60),
            requests: None,
            timeout: Duration::from_secs(1),
            drain: Duration::from_secs(1),
            threads: 1,
            scenarios: vec![ScenarioSpec::new(Kind::Chat)],
            label: None,
            seed: 0,
            api_key: None,
            headers: Vec::new(),
            spread: Duration::ZERO,
        };
        assert_eq!(bucket_for(&plan), Duration::from_millis(600));
        plan.duration = Duration::from_secs(2);
        assert_eq!(bucket_for(&plan), Duration::from_millis(100));
        plan.mode = Mode::Open {
            rate: 100.0,
            max_in_flight: 10,
        };
        plan.duration = crate::plan::MAX_DURATION;
        plan.requests = Some(6_000);
        assert_eq!(bucket_for(&plan), Duration::from_millis(600));
    }
}
