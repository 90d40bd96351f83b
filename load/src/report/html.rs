//! A self-contained HTML report: inline SVG charts drawn here by hand (no script, no CDN), so
//! the file can be mailed, attached to CI or opened offline.

use std::fmt::Write as _;

use super::{Report, ScenarioReport};
use crate::hist::fmt_us;

const W: f64 = 640.0;
const H: f64 = 220.0;
const PAD_L: f64 = 56.0;
const PAD_B: f64 = 36.0;
const PAD_T: f64 = 14.0;
const PAD_R: f64 = 14.0;

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let title = match &r.label {
        Some(l) => format!("switchyard-load: {}", escape(l)),
        None => "switchyard-load report".to_string(),
    };
    let mode = r.mode.describe();
    let _ = write!(
        o,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title><style>\
         body{{font-family:system-ui,sans-serif;margin:24px;color:#222}}\
         table{{border-collapse:collapse;margin:8px 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}\
         th{{background:#f3f3f3}}td:first-child{{text-align:left}}svg{{background:#fff;border:1px solid #ddd;margin:4px 8px 12px 0}}\
         .charts{{display:flex;flex-wrap:wrap}}h2{{margin-top:28px}}</style></head><body>\
         <h1>{title}</h1><p>target <code>{target}</code>, {mode}, {threads} generator thread(s), \
         {wall:.2} s; {req} requests, {err} errors, {rps:.1} req/s.</p>",
        target = escape(&r.target),
        threads = r.threads,
        wall = r.wall_s,
        req = r.totals.requests,
        err = r.totals.errors,
        rps = r.totals.throughput_rps,
    );
    o.push_str(
        "<table><tr><th>scenario</th><th>requests</th><th>errors</th><th>req/s</th>\
         <th>p50</th><th>p90</th><th>p99</th><th>max</th><th>first p50</th><th>gap p50</th></tr>",
    );
    for s in &r.scenarios {
        let l = &s.latency_us;
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&s.name),
            s.requests,
            s.errors,
            s.throughput_rps,
            fmt_us(l.p50),
            fmt_us(l.p90),
            fmt_us(l.p99),
            fmt_us(l.max),
            s.first_us.map_or("–".into(), |f| fmt_us(f.p50)),
            s.gap_us.map_or("–".into(), |g| fmt_us(g.p50)),
        );
    }
    o.push_str("</table>");
    for s in &r.scenarios {
        let _ = write!(o, "<h2>{}</h2>", escape(&s.name));
        if !s.errors_by_kind.is_empty() {
            let errs: Vec<String> = s
                .errors_by_kind
                .iter()
                .map(|(k, v)| format!("{}×{v}", escape(k)))
                .collect();
            let _ = write!(o, "<p>errors: {}</p>", errs.join(", "));
        }
        o.push_str("<div class=\"charts\">");
        o.push_str(&histogram_svg(s));
        o.push_str(&timeline_svg(s, r.bucket_ms));
        o.push_str("</div>");
    }
    o.push_str("</body></html>\n");
    o
}

/// Bars of the log-spaced latency buckets (x: latency, log scale; y: requests).
pub fn histogram_svg(s: &ScenarioReport) -> String {
    let mut o = svg_open("latency histogram (successful requests)");
    let b = &s.latency_buckets;
    if b.is_empty() {
        o.push_str(&no_data());
        o.push_str("</svg>");
        return o;
    }
    let max = b.iter().map(|x| x.1).max().unwrap_or(1).max(1) as f64;
    let n = b.len() as f64;
    let pw = W - PAD_L - PAD_R;
    let ph = H - PAD_T - PAD_B;
    let bw = pw / n;
    for (i, (ub, c)) in b.iter().enumerate() {
        let h = (*c as f64 / max) * ph;
        let x = PAD_L + i as f64 * bw;
        let _ = write!(
            o,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#4a7bd0\"><title>≤ {} : {c}</title></rect>",
            PAD_T + ph - h,
            (bw - 1.0).max(0.5),
            fmt_us(*ub)
        );
    }
    // About six x labels, at bucket bounds.
    let step = (b.len() / 6).max(1);
    for (i, (ub, _)) in b.iter().enumerate().step_by(step) {
        let x = PAD_L + (i as f64 + 1.0) * bw;
        let _ = write!(
            o,
            "<text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
            H - PAD_B + 14.0,
            fmt_us(*ub)
        );
    }
    axes(&mut o, &format!("{}", max as u64), "latency (log scale)");
    o.push_str("</svg>");
    o
}

/// Completions per second over the run, ok in blue and errors in red.
pub fn timeline_svg(s: &ScenarioReport, bucket_ms: u64) -> String {
    let mut o = svg_open("throughput over time (completions/s)");
    let t = &s.timeline;
    if t.is_empty() || bucket_ms == 0 {
        o.push_str(&no_data());
        o.push_str("</svg>");
        return o;
    }
    let scale = 1000.0 / bucket_ms as f64;
    let max = t
        .iter()
        .map(|b| (b[0] + b[1]) as f64 * scale)
        .fold(1.0f64, f64::max);
    let pw = W - PAD_L - PAD_R;
    let ph = H - PAD_T - PAD_B;
    let n = t.len().max(2) as f64 - 1.0;
    for (series, color) in [(0usize, "#4a7bd0"), (1, "#d04a4a")] {
        if series == 1 && t.iter().all(|b| b[1] == 0) {
            continue;
        }
        let pts: Vec<String> = t
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let x = PAD_L + i as f64 / n * pw;
                let y = PAD_T + ph - (b[series] as f64 * scale / max) * ph;
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = write!(
            o,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>",
            pts.join(" ")
        );
    }
    let secs = t.len() as f64 * bucket_ms as f64 / 1000.0;
    for i in 0..=4 {
        let x = PAD_L + f64::from(i) / 4.0 * pw;
        let _ = write!(
            o,
            "<text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{:.1}s</text>",
            H - PAD_B + 14.0,
            secs * f64::from(i) / 4.0
        );
    }
    axes(&mut o, &format!("{max:.0}/s"), "time since start");
    o.push_str("</svg>");
    o
}

fn svg_open(title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\">\
         <text x=\"{PAD_L}\" y=\"11\" font-size=\"11\" font-weight=\"bold\">{}</text>",
        escape(title)
    )
}

fn axes(o: &mut String, ymax: &str, xlabel: &str) {
    let _ = write!(
        o,
        "<line x1=\"{PAD_L}\" y1=\"{PAD_T}\" x2=\"{PAD_L}\" y2=\"{y0}\" stroke=\"#333\"/>\
         <line x1=\"{PAD_L}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y0}\" stroke=\"#333\"/>\
         <text x=\"{tx}\" y=\"{ty}\" font-size=\"10\" text-anchor=\"end\">{ymax}</text>\
         <text x=\"{tx}\" y=\"{y0}\" font-size=\"10\" text-anchor=\"end\">0</text>\
         <text x=\"{xm}\" y=\"{yl}\" font-size=\"10\" text-anchor=\"middle\">{xlabel}</text>",
        y0 = H - PAD_B,
        x1 = W - PAD_R,
        tx = PAD_L - 4.0,
        ty = PAD_T + 8.0,
        xm = (PAD_L + W - PAD_R) / 2.0,
        yl = H - 4.0,
        ymax = escape(ymax),
        xlabel = escape(xlabel),
    );
}

fn no_data() -> String {
    format!(
        "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">no data</text>",
        W / 2.0,
        H / 2.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample;
    use crate::report::Report;

    #[test]
    fn html_is_self_contained_with_both_charts() {
        let (plan, run) = sample();
        let r = Report::build(&plan, &run);
        let html = render(&r);
        assert!(html.starts_with("<!doctype html>"));
        assert!(html.contains("unit &lt;test&gt;"), "label is escaped");
        assert!(!html.contains("<script"), "no script");
        assert!(!html.contains("src=\"http"), "no external assets");
        assert_eq!(html.matches("<svg").count(), 4, "two charts per scenario");
        assert!(html.contains("<rect"), "histogram bars");
        assert!(html.contains("<polyline"), "timeline");
        assert!(html.contains("stroke=\"#d04a4a\""), "error series drawn");
        assert!(html.trim_end().ends_with("</html>"));
    }

    #[test]
    fn empty_scenarios_say_no_data() {
        let (plan, mut run) = sample();
        run.stats.scenarios[1] = Default::default();
        let r = Report::build(&plan, &run);
        assert!(histogram_svg(&r.scenarios[1]).contains("no data"));
        assert!(timeline_svg(&r.scenarios[1], 100).contains("no data"));
        assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
    }
}
