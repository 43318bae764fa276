//! The dashboard as one HTML page: tables for alerts, SLOs, uptime, history and silences, and
//! an SVG line chart per panel, drawn here. Every text from the configuration, the store or a
//! client is escaped.

use std::fmt::Write as _;

use super::{Dashboard, Line, PanelData, RANGES, Uptime};
use crate::format::format_value;

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
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

/// Line colours, told apart also by people with the common colour-vision deficiencies.
const COLOURS: [&str; 8] = [
    "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#000000", "#f0e442",
];

const STYLE: &str = r#"
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1f24;background:#f5f6f8}
header{display:flex;align-items:center;gap:16px;padding:12px 20px;background:#1b1f24;color:#fff;flex-wrap:wrap}
header h1{font-size:18px;margin:0;font-weight:600}
header nav a{color:#c9d1d9;text-decoration:none;padding:4px 10px;border-radius:4px;margin-right:4px}
header nav a.on{background:#fff;color:#1b1f24}
header .meta{margin-left:auto;color:#8b949e;font-size:12px}
main{padding:16px 20px;display:grid;gap:16px}
section{background:#fff;border:1px solid #d8dee4;border-radius:6px;padding:12px 16px}
section h2{font-size:15px;margin:0 0 8px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eaeef2;vertical-align:top}
th{font-weight:600;color:#57606a;font-size:12px}
.nw{white-space:nowrap}
.panels{display:grid;grid-template-columns:repeat(auto-fill,minmax(460px,1fr));gap:16px}
.panels section{margin:0}
.sev{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff}
.sev-critical{background:#cf222e}.sev-warning{background:#bf8700}.sev-info{background:#0969da}
.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}.none{color:#8b949e}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:12px;margin-top:4px}
.legend i{display:inline-block;width:12px;height:3px;margin-right:5px;vertical-align:middle}
.bar{background:#eaeef2;border-radius:3px;height:8px;width:120px;display:inline-block;vertical-align:middle;margin-right:6px}
.bar b{display:block;height:8px;border-radius:3px}
svg text{font:11px system-ui,sans-serif;fill:#57606a}
.empty{color:#8b949e;padding:8px 0}
"#;

/// A number short enough for an axis or a legend: three significant digits, `k` and `M` for
/// thousands and millions.
pub fn short(v: f64) -> String {
    let a = v.abs();
    let (v, suffix) = if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e4 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let a = v.abs();
    let digits = if a >= 100.0 || a == 0.0 {
        0
    } else if a >= 10.0 {
        1
    } else if a >= 1.0 {
        2
    } else {
        3
    };
    let text = format!("{v:.digits$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    let text = if text == "-0" { "0".to_string() } else { text };
    format!("{text}{suffix}")
}

/// The gap between two points of a line past which it is broken: one and a half steps, or
/// twice the line's usual spacing when it is sampled less often than every step.
fn gap_limit(points: &[(i64, f64)], step: i64) -> i64 {
    let mut deltas: Vec<i64> = points.windows(2).map(|w| w[1].0 - w[0].0).collect();
    if deltas.is_empty() {
        return step * 3 / 2;
    }
    let mid = deltas.len() / 2;
    let (_, median, _) = deltas.select_nth_unstable(mid);
    (step * 3 / 2).max(*median * 2)
}

/// A duration in its largest whole unit: `3 h 12 min`, `45 s`.
pub fn age(ms: i64) -> String {
    let s = (ms / 1000).max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

fn time_of(ms: i64, with_date: bool, tz: chrono_tz::Tz) -> String {
    let Some(t) = chrono::DateTime::from_timestamp_millis(ms) else {
        return String::new();
    };
    let t = t.with_timezone(&tz);
    if with_date {
        t.format("%b %d %H:%M").to_string()
    } else {
        t.format("%H:%M").to_string()
    }
}

fn ms_of(rfc3339: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// A round tick spacing for a span: 1, 2 or 5 × 10ⁿ, about `n` ticks.
fn nice_step(span: f64, n: f64) -> f64 {
    let raw = (span / n).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// The y axis of finite values `lo..=hi`: (bottom, top, tick spacing, ticks), the bottom at
/// 0 or below, round ticks; `None` when the values are too large to draw.
fn y_axis(lo: f64, hi: f64) -> Option<(f64, f64, f64, u32)> {
    let lo = lo.min(0.0);
    let mut hi = hi.max(lo);
    if hi - lo <= 0.0 {
        hi = lo + lo.abs().max(1.0);
    }
    let span = hi - lo;
    if !span.is_finite() || span <= 0.0 {
        return None;
    }
    let step = nice_step(span, 4.0);
    let (k0, k1) = ((lo / step).floor(), (hi / step).ceil());
    let (bottom, top) = (k0 * step, k1 * step);
    if step > 0.0 && bottom.is_finite() && top.is_finite() && top > bottom && k1 - k0 <= 12.0 {
        return Some((bottom, top, step, (k1 - k0) as u32));
    }
    // Too close to the largest number for round ticks: four plain ones.
    let step = span / 4.0;
    (step > 0.0 && step.is_finite()).then_some((lo, hi, step, 4))
}

/// The time between x-axis labels for a range.
fn time_tick(range_ms: i64) -> i64 {
    const TICKS: [i64; 10] = [
        60_000,
        300_000,
        600_000,
        1_800_000,
        3_600_000,
        3 * 3_600_000,
        6 * 3_600_000,
        12 * 3_600_000,
        86_400_000,
        5 * 86_400_000,
    ];
    TICKS
        .iter()
        .copied()
        .find(|t| range_ms / t <= 8)
        .unwrap_or(10 * 86_400_000)
}

/// An SVG line chart of `lines` over `[from, to)`.
pub fn chart(lines: &[Line], from: i64, to: i64, step: i64) -> String {
    chart_in(lines, from, to, step, chrono_tz::UTC)
}

/// [`chart`] with its time axis in `tz` (a report's time zone): labels on round local times.
pub fn chart_in(lines: &[Line], from: i64, to: i64, step: i64, tz: chrono_tz::Tz) -> String {
    const W: f64 = 640.0;
    const H: f64 = 220.0;
    const LEFT: f64 = 44.0;
    const RIGHT: f64 = 12.0;
    const TOP: f64 = 10.0;
    const BOTTOM: f64 = 24.0;
    let points: usize = lines.iter().map(|l| l.points.len()).sum();
    let mut svg = String::with_capacity(4096 + points * 24);
    let _ = write!(
        svg,
        r#"<svg class="chart" data-points="{points}" viewBox="0 0 {W} {H}" width="100%" role="img" preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg">"#
    );
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for (_, v) in lines.iter().flat_map(|l| &l.points) {
        if v.is_finite() {
            lo = lo.min(*v);
            hi = hi.max(*v);
        }
    }
    let axis = (lo <= hi).then(|| y_axis(lo, hi)).flatten();
    let Some((lo, hi, ystep, ticks)) = axis else {
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">No data in this range</text></svg>"#,
            W / 2.0,
            H / 2.0
        );
        return svg;
    };
    let span_t = (to - from).max(1) as f64;
    let x = |t: i64| LEFT + (t - from) as f64 / span_t * (W - LEFT - RIGHT);
    let y = |v: f64| TOP + (hi - v) / (hi - lo) * (H - TOP - BOTTOM);
    // Grid and y labels.
    for k in 0..=ticks {
        let v = lo + k as f64 * ystep;
        let yy = y(v);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#eaeef2"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            yy + 4.0,
            short(v)
        );
    }
    // Time labels.
    let tick = time_tick(to - from);
    let with_date = to - from > 86_400_000;
    // Round in local time: the zone's offset at the start of the range.
    let offset = {
        use chrono::Offset as _;
        chrono::DateTime::from_timestamp_millis(from)
            .map(|t| t.with_timezone(&tz).offset().fix().local_minus_utc() as i64 * 1000)
            .unwrap_or(0)
    };
    let mut t = ((from + offset) / tick + 1) * tick - offset;
    while t < to {
        let xx = x(t);
        let _ = write!(
            svg,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{TOP}" y2="{}" stroke="#f3f4f6"/><text x="{xx:.1}" y="{}" text-anchor="middle">{}</text>"##,
            H - BOTTOM,
            H - 8.0,
            time_of(t, with_date, tz)
        );
        t += tick;
    }
    // Lines, broken where steps are missing.
    for (i, l) in lines.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut d = String::with_capacity(l.points.len() * 16);
        let mut singles = Vec::new();
        let mut prev: Option<i64> = None;
        let mut run = 0usize;
        let limit = gap_limit(&l.points, step);
        for (j, (t, v)) in l.points.iter().enumerate() {
            if !v.is_finite() {
                continue;
            }
            let joined = prev.is_some_and(|p| t - p <= limit);
            if !joined {
                if run == 1 {
                    singles.push(l.points[j - 1]);
                }
                run = 0;
            }
            let _ = write!(
                d,
                "{}{:.1} {:.1}",
                if joined { "L" } else { "M" },
                x(*t),
                y(*v)
            );
            run += 1;
            prev = Some(*t);
        }
        if run == 1
            && let Some(last) = l.points.last()
        {
            singles.push(*last);
        }
        let _ = write!(
            svg,
            r#"<path class="series" data-series="{}" data-points="{}" d="{d}" fill="none" stroke="{colour}" stroke-width="1.6" stroke-linejoin="round"><title>{}</title></path>"#,
            esc(&l.label),
            l.points.len(),
            esc(&l.label)
        );
        for (t, v) in singles {
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2" fill="{colour}"/>"#,
                x(t),
                y(v)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

fn legend(lines: &[Line], unit: &str) -> String {
    let mut out = String::from(r#"<div class="legend">"#);
    for (i, l) in lines.iter().enumerate() {
        let last = l
            .points
            .last()
            .map(|(_, v)| format!(" — last {} {}", short(*v), unit))
            .unwrap_or_default();
        let _ = write!(
            out,
            r#"<span><i style="background:{}"></i>{}{}</span>"#,
            COLOURS[i % COLOURS.len()],
            esc(&l.label),
            esc(&last)
        );
    }
    out.push_str("</div>");
    out
}

fn panel(p: &PanelData, d: &Dashboard) -> String {
    let unit = if p.unit.is_empty() {
        String::new()
    } else {
        format!(r#" <small class="none">{}</small>"#, esc(&p.unit))
    };
    format!(
        r#"<section class="panel"><h2>{}{unit}</h2>{}{}</section>"#,
        esc(&p.title),
        chart(&p.series, d.from_ms, d.to_ms, d.step_ms),
        legend(&p.series, &p.unit)
    )
}

/// The strip of an uptime row: one bar per step, green when all probes succeeded.
fn strip(u: &Uptime, d: &Dashboard) -> String {
    const W: f64 = 300.0;
    const H: f64 = 16.0;
    let mut s = format!(
        r#"<svg class="strip" data-points="{}" viewBox="0 0 {W} {H}" width="300" height="16" xmlns="http://www.w3.org/2000/svg">"#,
        u.steps.len()
    );
    let span = (d.to_ms - d.from_ms).max(1) as f64;
    // A bar reaches the next one unless steps are missing (probes rarer than steps).
    let limit = gap_limit(&u.steps, d.step_ms);
    for (i, (t, v)) in u.steps.iter().enumerate() {
        let until = match u.steps.get(i + 1) {
            Some((next, _)) if next - t <= limit => *next,
            _ => t + d.step_ms,
        };
        let w = ((until - t) as f64 / span * W).max(1.0);
        let colour = if *v >= 1.0 {
            "#2da44e"
        } else if *v > 0.0 {
            "#d4a72c"
        } else {
            "#cf222e"
        };
        let _ = write!(
            s,
            r#"<rect x="{:.1}" y="0" width="{w:.2}" height="{H}" fill="{colour}"/>"#,
            (t - d.from_ms) as f64 / span * W
        );
    }
    s.push_str("</svg>");
    s
}

fn pct(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$} %"))
        .unwrap_or_else(|| "—".to_string())
}

/// The error budget left, or how far it is overspent: `37 %`, `overspent: 4.2× the budget`.
fn budget_left(left: Option<f64>) -> String {
    match left {
        Some(l) if l < 0.0 => {
            let used = (100.0 - l) / 100.0;
            let digits = if used < 10.0 { 1 } else { 0 };
            format!("overspent: {used:.digits$}× the budget")
        }
        other => pct(other, 0),
    }
}

/// The whole page.
pub fn page(d: &Dashboard, now: i64) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">"#
    );
    if let Some(r) = d.refresh_seconds {
        let _ = write!(h, r#"<meta http-equiv="refresh" content="{r}">"#);
    }
    let _ = write!(
        h,
        r#"<title>{} — sloguard</title><style>{STYLE}</style></head><body><header><h1>{}</h1><nav>"#,
        esc(&d.title),
        esc(&d.title)
    );
    if !RANGES.iter().any(|(name, _)| *name == d.range) {
        let _ = write!(
            h,
            r#"<a href="?range={}" class="on">{}</a>"#,
            esc(&d.range),
            esc(&d.range)
        );
    }
    for (name, _) in RANGES {
        let _ = write!(
            h,
            r#"<a href="?range={name}"{}>{name}</a>"#,
            if d.range == name {
                r#" class="on""#
            } else {
                ""
            }
        );
    }
    let _ = write!(
        h,
        r#"</nav><span class="meta">last {} · every point {} · {} UTC · <a style="color:#8b949e" href="/api/v1/dashboard?range={}">JSON</a></span></header><main>"#,
        esc(&d.range),
        esc(
            &humantime::format_duration(std::time::Duration::from_millis(d.step_ms as u64))
                .to_string()
        ),
        esc(d.generated_at.replace('T', " ").trim_end_matches('Z')),
        esc(&d.range)
    );

    // Alerts now.
    h.push_str(r#"<section id="alerts"><h2>Alerts now</h2>"#);
    if d.alerts.is_empty() {
        h.push_str(r#"<div class="empty">Nothing pending or firing.</div>"#);
    } else {
        h.push_str("<table><tr><th>severity</th><th>alert</th><th>status</th><th>for</th><th>value</th><th>acknowledged</th></tr>");
        for a in &d.alerts {
            let sev = a.severity.to_string();
            let since = ms_of(a.fired_at.as_deref().unwrap_or(&a.since))
                .map(|t| age(now - t))
                .unwrap_or_default();
            let _ = write!(
                h,
                r#"<tr class="alert"><td><span class="sev sev-{}">{}</span></td><td><b>{}</b><br><small>{}</small></td><td>{}</td><td class="nw">{}</td><td>{}{}</td><td>{}</td></tr>"#,
                esc(&sev),
                esc(&sev),
                esc(a.summary.as_deref().unwrap_or(&a.rule)),
                esc(&a.fingerprint),
                esc(&a.status),
                esc(&since),
                esc(&format_value(a.value)),
                a.reason
                    .as_deref()
                    .map(|r| format!("<br><small>{}</small>", esc(r)))
                    .unwrap_or_default(),
                esc(a.acknowledged_by.as_deref().unwrap_or("—"))
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</section>");

    // SLOs.
    if !d.slos.is_empty() {
        h.push_str(r#"<section id="slos"><h2>SLOs</h2><table><tr><th>objective</th><th>target</th><th>attained</th><th>error budget left</th><th>state</th></tr>"#);
        for s in &d.slos {
            let left = s.budget_left.map(|l| l.clamp(0.0, 100.0)).unwrap_or(0.0);
            let colour = if left > 50.0 {
                "#2da44e"
            } else if left > 10.0 {
                "#d4a72c"
            } else {
                "#cf222e"
            };
            let _ = write!(
                h,
                r#"<tr class="slo"><td><b>{}</b><br><small>{}</small></td><td>{:.3} % over {}</td><td>{}</td><td><span class="bar"><b style="width:{left:.0}%;background:{colour}"></b></span>{}</td><td>{}</td></tr>"#,
                esc(s.summary.as_deref().unwrap_or(&s.rule)),
                esc(&s.rule),
                s.objective,
                esc(&s.period),
                pct(s.attained, 3),
                budget_left(s.budget_left),
                if s.firing {
                    r#"<span class="bad">burning</span>"#
                } else {
                    r#"<span class="ok">ok</span>"#
                }
            );
        }
        h.push_str("</table></section>");
    }

    // Panels.
    if !d.panels.is_empty() {
        h.push_str(r#"<div class="panels">"#);
        for p in &d.panels {
            h.push_str(&panel(p, d));
        }
        h.push_str("</div>");
    }

    // Uptime.
    if !d.uptime.is_empty() {
        let _ = write!(
            h,
            r#"<section id="uptime"><h2>Uptime over the last {}</h2><table><tr><th>target</th><th>now</th><th>uptime</th><th>mean probe time</th><th>per {}</th></tr>"#,
            esc(&d.range),
            esc(
                &humantime::format_duration(std::time::Duration::from_millis(d.step_ms as u64))
                    .to_string()
            )
        );
        for u in &d.uptime {
            let now_cell = match u.up {
                Some(true) => r#"<span class="ok">up</span>"#,
                Some(false) => r#"<span class="bad">down</span>"#,
                None => r#"<span class="none">no data</span>"#,
            };
            let _ = write!(
                h,
                r#"<tr><td>{}</td><td>{now_cell}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                esc(&u.target),
                pct(u.uptime, 2),
                u.latency_ms
                    .map(|l| format!("{} ms", format_value(l)))
                    .unwrap_or_else(|| "—".into()),
                strip(u, d)
            );
        }
        h.push_str("</table></section>");
    }

    // History.
    let _ = write!(
        h,
        r#"<section id="history"><h2>Alert history (newest first)</h2>"#
    );
    if d.history.is_empty() {
        h.push_str(r#"<div class="empty">Nothing happened in this range.</div>"#);
    } else {
        h.push_str("<table><tr><th>time (UTC)</th><th>event</th><th>alert</th><th>channel</th><th>detail</th></tr>");
        for e in &d.history {
            let _ = write!(
                h,
                r#"<tr><td class="nw">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                esc(&chrono::DateTime::from_timestamp_millis(e.at_ms)
                    .map(|t| t.format("%b %d %H:%M:%S").to_string())
                    .unwrap_or_default()),
                esc(e.event.as_str()),
                esc(&e.alert),
                esc(e.channel.as_deref().unwrap_or("")),
                esc(e.detail.as_deref().unwrap_or(""))
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</section>");

    // Silences.
    h.push_str(r#"<section id="silences"><h2>Silences</h2>"#);
    if d.silences.is_empty() {
        h.push_str(r#"<div class="empty">No silences in this range.</div>"#);
    } else {
        h.push_str("<table><tr><th>matchers</th><th>state</th><th>from</th><th>until</th><th>by</th><th>reason</th></tr>");
        for s in &d.silences {
            let matchers = s
                .matchers
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&matchers),
                if s.active { "active" } else { "expired" },
                esc(&s.starts_at),
                esc(&s.ends_at),
                esc(&s.by),
                esc(&s.reason)
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</section></main></body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_could_be_markup() {
        assert_eq!(
            esc(r#"<script>alert("x") & 'y'</script>"#),
            "&lt;script&gt;alert(&quot;x&quot;) &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn an_overspent_budget_says_so_instead_of_a_negative_percentage() {
        assert_eq!(budget_left(Some(37.4)), "37 %");
        assert_eq!(budget_left(Some(0.0)), "0 %");
        assert_eq!(budget_left(Some(-44_344.0)), "overspent: 444× the budget");
        assert_eq!(budget_left(Some(-98.0)), "overspent: 2.0× the budget");
        assert_eq!(budget_left(None), "—");
    }

    #[test]
    fn a_chart_breaks_its_line_at_missing_steps() {
        let line = Line {
            label: "p95".into(),
            points: vec![(0, 1.0), (60_000, 2.0), (120_000, 3.0), (600_000, 4.0)],
        };
        let svg = chart(&[line], 0, 900_000, 60_000);
        let path = svg
            .split("<path")
            .nth(1)
            .and_then(|p| p.split(" d=\"").nth(1))
            .and_then(|p| p.split('"').next())
            .unwrap();
        assert_eq!(path.matches('M').count(), 2, "{path}");
        assert_eq!(path.matches('L').count(), 2, "{path}");
        assert_eq!(
            svg.matches("<circle").count(),
            1,
            "the lone point shows as a dot"
        );
        assert!(svg.contains(r#"data-points="4""#));
    }

    #[test]
    fn an_empty_chart_says_so() {
        let svg = chart(&[], 0, 3_600_000, 60_000);
        assert!(svg.contains("No data in this range"));
        assert!(svg.contains(r#"data-points="0""#));
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(short(3000.0), "3000");
        assert_eq!(short(15_600.0), "15.6k");
        assert_eq!(short(242.289), "242");
        assert_eq!(short(12.345), "12.3");
        assert_eq!(short(0.0421), "0.042");
        assert_eq!(short(2_500_000.0), "2.5M");
        assert_eq!(short(0.0), "0");
    }

    #[test]
    fn a_line_sampled_every_two_steps_is_not_broken() {
        let points: Vec<(i64, f64)> = (0..10).map(|i| (i * 2000, 1.0)).collect();
        let svg = chart(
            &[Line {
                label: "commits".into(),
                points,
            }],
            0,
            20_000,
            1000,
        );
        assert_eq!(svg.matches('M').count(), 1, "{svg}");
    }

    #[test]
    fn extreme_values_still_draw_and_end() {
        for values in [
            vec![1.6e308, 1.7e308],
            vec![-9e15, -9e15],
            vec![f64::MAX],
            vec![-f64::MAX, f64::MAX],
            vec![5e-320],
            vec![3.0, 3.0],
        ] {
            let line = Line {
                label: "x".into(),
                points: values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (i as i64 * 1000, *v))
                    .collect(),
            };
            let svg = chart(&[line], 0, 10_000, 1000);
            assert!(svg.ends_with("</svg>"), "{values:?}");
            assert!(
                !svg.contains("NaN") && !svg.contains("inf"),
                "{values:?}: {svg}"
            );
            assert!(svg.matches("<line").count() < 40, "{values:?}");
        }
        let (lo, hi, step, n) = y_axis(0.0, 7.3).unwrap();
        assert_eq!((lo, hi, step, n), (0.0, 8.0, 2.0, 4));
        let (lo, hi, _, _) = y_axis(-9e15, -9e15).unwrap();
        assert!(lo <= -9e15 && hi > lo);
    }

    #[test]
    fn a_report_chart_labels_local_times() {
        // 2026-11-26 00:00 to 06:00 UTC is 2026-11-25 19:00 to 01:00 in New York (UTC−5).
        let from = 1_795_651_200_000;
        let line = Line {
            label: "x".into(),
            points: vec![(from, 1.0), (from + 3_600_000, 2.0)],
        };
        let ny: chrono_tz::Tz = "America/New_York".parse().unwrap();
        let svg = chart_in(
            std::slice::from_ref(&line),
            from,
            from + 6 * 3_600_000,
            600_000,
            ny,
        );
        assert!(svg.contains(">20:00<") && svg.contains(">00:00<"), "{svg}");
        let utc = chart(&[line], from, from + 6 * 3_600_000, 600_000);
        assert!(utc.contains(">01:00<") && !utc.contains(">20:00<"), "{utc}");
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(nice_step(1000.0, 4.0), 500.0);
        assert_eq!(nice_step(7.3, 4.0), 2.0);
        assert_eq!(nice_step(0.03, 4.0), 0.01);
        assert_eq!(time_tick(3_600_000), 600_000);
        assert_eq!(time_tick(86_400_000), 3 * 3_600_000);
    }
}
