//! A report as plain text (which reads well alone), as HTML with its charts as inline PNG
//! images (drawn as the dashboard's SVG charts, rasterised with resvg), and as the email
//! that carries both.

use std::fmt::Write as _;

use chrono::TimeZone as _;

use super::{ChartData, ReportData, Span};
use crate::dashboard::html::{chart_in, esc, short};
use crate::notify::email::ReportMail;

/// A PNG image of a chart, and the Content-ID the HTML refers to it by.
pub struct Image {
    pub cid: String,
    pub png: Vec<u8>,
}

fn local(ms: i64, tz: &str, with_time: bool) -> String {
    let tz: chrono_tz::Tz = tz.parse().unwrap_or(chrono_tz::UTC);
    match tz.timestamp_millis_opt(ms).single() {
        Some(t) if with_time => t.format("%a %d %b %Y %H:%M").to_string(),
        Some(t) => t.format("%a %d %b %Y").to_string(),
        None => String::new(),
    }
}

fn span_text(s: Span, tz: &str) -> String {
    format!(
        "{} – {}",
        local(s.from_ms, tz, true),
        local(s.to_ms, tz, true)
    )
}

fn duration_text(ms: i64) -> String {
    crate::dashboard::html::age(ms)
}

/// `3 critical, 1 warning`.
fn severities(a: &super::AlertStats) -> String {
    a.by_severity
        .iter()
        .map(|(s, n)| format!("{n} {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `, after 4 min on average`, or nothing.
fn on_average(ms: Option<i64>) -> String {
    ms.map(|m| format!(", after {} on average", duration_text(m)))
        .unwrap_or_default()
}

fn opt(v: Option<f64>, unit: &str) -> String {
    match v {
        Some(v) if unit.is_empty() => short(v),
        Some(v) => format!("{} {unit}", short(v)),
        None => "no data".to_string(),
    }
}

/// `+12 %`, `−3 %`, or nothing when there is nothing to compare.
fn change(now: Option<f64>, before: Option<f64>) -> String {
    match (now, before) {
        (Some(n), Some(b)) if b != 0.0 => {
            let pct = (n - b) / b.abs() * 100.0;
            if pct.abs() < 0.5 {
                "unchanged".to_string()
            } else {
                format!("{}{:.0} %", if pct > 0.0 { "+" } else { "−" }, pct.abs())
            }
        }
        _ => String::new(),
    }
}

/// The unit a usage line's figures carry (`%` or none).
fn unit_of(u: &crate::report::UsageLine) -> &str {
    u.unit.as_deref().unwrap_or("")
}

/// A usage line's change: in percentage points for percentages, else relative.
fn usage_change(u: &crate::report::UsageLine, now: Option<f64>, before: Option<f64>) -> String {
    if u.unit.as_deref() != Some("%") {
        return change(now, before);
    }
    match (now, before) {
        (Some(n), Some(b)) if (n - b).abs() < 0.05 => "unchanged".to_string(),
        (Some(n), Some(b)) => format!("{}{:.1} pp", if n > b { "+" } else { "−" }, (n - b).abs()),
        _ => String::new(),
    }
}

/// ` (target > 80 %: met)`, or nothing without a target.
fn target_text(u: &crate::report::UsageLine) -> String {
    match (&u.target, u.met) {
        (Some(t), Some(true)) => format!(" (target {t}: met)"),
        (Some(t), Some(false)) => format!(" (target {t}: MISSED)"),
        (Some(t), None) => format!(" (target {t}: no data)"),
        (None, _) => String::new(),
    }
}

/// `live 76.7 %, demo 23.3 %`, each with its change from the period before when there is one.
fn breakdown_text(u: &crate::report::UsageLine) -> String {
    u.breakdown
        .iter()
        .take(10)
        .map(|(k, v)| {
            let before = u
                .breakdown_before
                .iter()
                .find(|(b, _)| b == k)
                .map(|(_, b)| *b);
            let ch = usage_change(u, Some(*v), before);
            let value = match unit_of(u) {
                "" => short(*v),
                unit => format!("{} {unit}", short(*v)),
            };
            if ch.is_empty() || ch == "unchanged" || before.is_none() {
                format!("{k} {value}")
            } else {
                format!("{k} {value} ({ch})")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Percent with the precision an SLO needs (99.95 %, not 100 %).
fn percent(v: f64) -> String {
    if (99.0..100.0).contains(&v) {
        format!("{v:.3} %")
    } else {
        format!("{v:.1} %")
    }
}

/// An SLO line's value: availability in percent, a ratio as a percent, others as they are.
fn slo_value(v: Option<f64>, measure: &str) -> String {
    match v {
        Some(v) if measure == "availability" => percent(v),
        Some(v) if measure.starts_with("ratio") => format!("{} %", short(v * 100.0)),
        Some(v) => short(v),
        None => "no data".to_string(),
    }
}

/// The plain-text part.
pub fn text(r: &ReportData) -> String {
    let tz = r.timezone.as_str();
    let mut t = String::new();
    let _ = writeln!(t, "{}", r.title);
    let _ = writeln!(t, "{} ({tz})", span_text(r.window, tz));
    let _ = writeln!(t, "compared with {}\n", span_text(r.previous, tz));
    for section in &r.sections {
        match section.as_str() {
            "slo" => {
                let _ = writeln!(t, "SLO COMPLIANCE");
                if r.slos.is_empty() {
                    let _ = writeln!(t, "  No SLO rules.");
                }
                for s in &r.slos {
                    let verdict = match s.met {
                        Some(true) => "met",
                        Some(false) => "MISSED",
                        None => "no data",
                    };
                    let _ = writeln!(
                        t,
                        "  {} [{verdict}]\n    {}: {} (objective {}; before: {})",
                        s.summary,
                        s.measure,
                        slo_value(s.attained, &s.measure),
                        s.objective,
                        slo_value(s.previous, &s.measure)
                    );
                    if let (Some(used), Some(left)) = (s.budget_used, s.budget_left) {
                        let _ = writeln!(
                            t,
                            "    error budget: {:.0} % used, {:.0} % left",
                            used,
                            left.max(0.0)
                        );
                    }
                }
                t.push('\n');
            }
            "alerts" => {
                let a = &r.alerts;
                let _ = writeln!(t, "ALERTS");
                let by_sev = severities(a);
                let _ = writeln!(
                    t,
                    "  {} fired{} (before: {})",
                    a.fired,
                    if by_sev.is_empty() {
                        String::new()
                    } else {
                        format!(": {by_sev}")
                    },
                    a.previous_fired
                );
                if a.fired > 0 {
                    let _ = writeln!(
                        t,
                        "  acknowledged: {} of {}{}",
                        a.acknowledged,
                        a.fired,
                        on_average(a.mean_to_acknowledge_ms)
                    );
                    let _ = writeln!(
                        t,
                        "  resolved: {} of {}{}",
                        a.resolved,
                        a.fired,
                        on_average(a.mean_to_resolve_ms)
                    );
                    let _ = writeln!(t, "  noisiest rules:");
                    for (rule, n) in a.by_rule.iter().take(5) {
                        let _ = writeln!(t, "    {n:>4}  {rule}");
                    }
                    let _ = writeln!(
                        t,
                        "  false-positive candidates (resolved within {}, nobody acknowledged): {}",
                        duration_text(a.false_positive_within_ms),
                        a.false_positives.len()
                    );
                    for f in a.false_positives.iter().take(10) {
                        let _ = writeln!(
                            t,
                            "    {}  {} (lasted {})",
                            local(f.fired_at_ms, tz, true),
                            f.alert,
                            duration_text(f.lasted_ms)
                        );
                    }
                }
                t.push('\n');
            }
            "usage" => {
                let _ = writeln!(t, "USAGE");
                if r.usage.is_empty() {
                    let _ = writeln!(t, "  No usage lines configured.");
                }
                for u in &r.usage {
                    let ch = usage_change(u, u.value, u.previous);
                    let _ = writeln!(
                        t,
                        "  {}: {}{} (before: {}{})",
                        u.title,
                        opt(u.value, unit_of(u)),
                        target_text(u),
                        opt(u.previous, unit_of(u)),
                        if ch.is_empty() {
                            String::new()
                        } else {
                            format!(", {ch}")
                        }
                    );
                    if !u.breakdown.is_empty() {
                        let _ = writeln!(
                            t,
                            "    by {}: {}",
                            u.by.as_deref().unwrap_or(""),
                            breakdown_text(u)
                        );
                    }
                }
                t.push('\n');
            }
            "database" => {
                let _ = writeln!(t, "DATABASE (named queries, by total time)");
                if r.database.is_empty() {
                    let _ = writeln!(t, "  No query statistics in this period.");
                }
                for q in &r.database {
                    let ch = change(q.mean_ms, q.previous_mean_ms);
                    let _ = writeln!(
                        t,
                        "  {}/{}: total {} in {} calls, mean {} (before: {}{})",
                        q.database,
                        q.query,
                        q.total_ms
                            .map(|m| duration_text(m as i64))
                            .unwrap_or_else(|| "?".into()),
                        q.calls.map(short).unwrap_or_else(|| "?".into()),
                        opt(q.mean_ms, "ms"),
                        opt(q.previous_mean_ms, "ms"),
                        if ch.is_empty() {
                            String::new()
                        } else {
                            format!(", {ch}")
                        }
                    );
                }
                t.push('\n');
            }
            _ => {}
        }
    }
    let _ = writeln!(t, "SLOGUARD");
    let _ = writeln!(t, "  {}", daemon_sentence(r));
    for d in r.daemon.down.iter().take(20) {
        let _ = writeln!(
            t,
            "    down {} ({})",
            span_text(*d, tz),
            duration_text(d.to_ms - d.from_ms)
        );
    }
    t
}

fn daemon_sentence(r: &ReportData) -> String {
    let d = &r.daemon;
    if !d.recorded {
        "No record of sloguard running in this period: these figures may be incomplete.".to_string()
    } else if let Some(since) = d.recorded_since {
        let tz = r.timezone.as_str();
        if d.down.is_empty() {
            format!(
                "sloguard recorded its uptime from {} on, and was up all that time.",
                local(since, tz, true)
            )
        } else {
            format!(
                "sloguard recorded its uptime from {} on; it was down {} time{} since.",
                local(since, tz, true),
                d.down.len(),
                if d.down.len() == 1 { "" } else { "s" }
            )
        }
    } else if d.down.is_empty() {
        "sloguard was up the whole period.".to_string()
    } else {
        let lost: i64 = d.down.iter().map(|s| s.to_ms - s.from_ms).sum();
        format!(
            "sloguard was down {} time{}, {} in all ({:.2} % up): alerts in those times were not evaluated.",
            d.down.len(),
            if d.down.len() == 1 { "" } else { "s" },
            duration_text(lost),
            d.up_percent
        )
    }
}

/// The charts as PNG images (Content-IDs `chart-0`, `chart-1`, …).
pub fn images(r: &ReportData) -> Vec<Image> {
    let tz: chrono_tz::Tz = r.timezone.parse().unwrap_or(chrono_tz::UTC);
    r.charts
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            png(c, r.window, tz).map(|png| Image {
                cid: format!("chart-{i}"),
                png,
            })
        })
        .collect()
}

/// Rasterises the dashboard's SVG chart of `c`, 640 × 220 pixels: a mail stays light.
fn png(c: &ChartData, window: Span, tz: chrono_tz::Tz) -> Option<Vec<u8>> {
    let svg = chart_in(&c.lines, window.from_ms, window.to_ms, c.step_ms, tz).replacen(
        r#"width="100%""#,
        r##"width="640" height="220" font-family="DejaVu Sans, Liberation Sans, Arial, sans-serif" font-size="11" style="background:#ffffff""##,
        1,
    );
    let mut opt = resvg::usvg::Options::default();
    opt.fontdb_mut().load_system_fonts();
    let tree = resvg::usvg::Tree::from_str(&svg, &opt).ok()?;
    let (w, h) = (640, 220);
    let mut pixmap = resvg::tiny_skia::Pixmap::new(w, h)?;
    pixmap.fill(resvg::tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::identity(),
        &mut pixmap.as_mut(),
    );
    pixmap.encode_png().ok()
}

const TD: &str = r#"style="padding:4px 10px;border-bottom:1px solid #eaeef2;text-align:left;vertical-align:top""#;
const TH: &str = r#"style="padding:4px 10px;border-bottom:1px solid #d8dee4;text-align:left;color:#57606a;font-size:12px""#;

/// The HTML part. `src` gives each chart's image source: `cid:chart-0` in an email, a
/// `data:` URI in a file.
pub fn html(r: &ReportData, images: &[Image], src: impl Fn(&Image) -> String) -> String {
    let tz = r.timezone.as_str();
    let mut h = String::with_capacity(16 * 1024);
    let _ = write!(
        h,
        r#"<!DOCTYPE html><html><head><meta charset="utf-8"><title>{}</title></head><body style="font-family:Arial,Helvetica,sans-serif;font-size:14px;color:#1b1f24;max-width:760px;margin:0 auto;padding:16px"><h1 style="font-size:20px;margin:0 0 4px">{}</h1><p style="color:#57606a;margin:0 0 16px">{} ({})<br>compared with {}</p>"#,
        esc(&r.title),
        esc(&r.title),
        esc(&span_text(r.window, tz)),
        esc(tz),
        esc(&span_text(r.previous, tz))
    );
    let charts_of = |h: &mut String, section: &str| {
        for (i, c) in r.charts.iter().enumerate() {
            if c.section != section {
                continue;
            }
            if let Some(img) = images.iter().find(|im| im.cid == format!("chart-{i}")) {
                let _ = write!(
                    h,
                    r#"<p style="margin:12px 0 2px;font-weight:bold">{}{}</p><img src="{}" width="640" alt="{}" style="display:block;max-width:100%;border:1px solid #eaeef2">"#,
                    esc(&c.title),
                    if c.unit.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", esc(&c.unit))
                    },
                    esc(&src(img)),
                    esc(&c.title)
                );
            }
        }
    };
    let heading = |h: &mut String, title: &str| {
        let _ = write!(
            h,
            r#"<h2 style="font-size:16px;margin:24px 0 8px;border-bottom:2px solid #1b1f24">{}</h2>"#,
            esc(title)
        );
    };
    for section in &r.sections {
        match section.as_str() {
            "slo" => {
                heading(&mut h, "SLO compliance");
                let _ = write!(
                    h,
                    "<table style=\"border-collapse:collapse;width:100%\"><tr><th {TH}>objective</th><th {TH}>target</th><th {TH}>attained</th><th {TH}>before</th><th {TH}>error budget</th></tr>"
                );
                for s in &r.slos {
                    let (verdict, colour) = match s.met {
                        Some(true) => ("met", "#1a7f37"),
                        Some(false) => ("missed", "#cf222e"),
                        None => ("no data", "#57606a"),
                    };
                    let budget = match (s.budget_used, s.budget_left) {
                        (Some(u), Some(l)) => format!("{u:.0} % used, {:.0} % left", l.max(0.0)),
                        _ => "—".to_string(),
                    };
                    let _ = write!(
                        h,
                        "<tr><td {TD}><b>{}</b><br><small>{}</small></td><td {TD}>{}</td><td {TD}><b style=\"color:{colour}\">{}</b> ({verdict})</td><td {TD}>{}</td><td {TD}>{}</td></tr>",
                        esc(&s.summary),
                        esc(&s.measure),
                        esc(&s.objective),
                        esc(&slo_value(s.attained, &s.measure)),
                        esc(&slo_value(s.previous, &s.measure)),
                        esc(&budget)
                    );
                }
                h.push_str("</table>");
                charts_of(&mut h, "slo");
            }
            "alerts" => {
                let a = &r.alerts;
                heading(&mut h, "Alerts");
                let by_sev = severities(a);
                let _ = write!(
                    h,
                    "<p><b>{}</b> fired{} (before: {}). Acknowledged {} of them{}; resolved {}{}.</p>",
                    a.fired,
                    if by_sev.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", esc(&by_sev))
                    },
                    a.previous_fired,
                    a.acknowledged,
                    on_average(a.mean_to_acknowledge_ms),
                    a.resolved,
                    on_average(a.mean_to_resolve_ms)
                );
                if !a.by_rule.is_empty() {
                    let _ = write!(
                        h,
                        "<table style=\"border-collapse:collapse\"><tr><th {TH}>noisiest rules</th><th {TH}>alerts</th></tr>"
                    );
                    for (rule, n) in a.by_rule.iter().take(5) {
                        let _ = write!(h, "<tr><td {TD}>{}</td><td {TD}>{n}</td></tr>", esc(rule));
                    }
                    h.push_str("</table>");
                }
                let _ = write!(
                    h,
                    "<p>False-positive candidates (resolved within {}, nobody acknowledged): <b>{}</b></p>",
                    duration_text(a.false_positive_within_ms),
                    a.false_positives.len()
                );
                if !a.false_positives.is_empty() {
                    h.push_str("<ul>");
                    for f in a.false_positives.iter().take(10) {
                        let _ = write!(
                            h,
                            "<li>{} — {} (lasted {})</li>",
                            esc(&local(f.fired_at_ms, tz, true)),
                            esc(&f.alert),
                            duration_text(f.lasted_ms)
                        );
                    }
                    h.push_str("</ul>");
                }
                charts_of(&mut h, "alerts");
            }
            "usage" => {
                heading(&mut h, "Usage");
                let _ = write!(
                    h,
                    "<table style=\"border-collapse:collapse;width:100%\"><tr><th {TH}></th><th {TH}>this period</th><th {TH}>before</th><th {TH}>change</th></tr>"
                );
                for u in &r.usage {
                    let breakdown = if u.breakdown.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "<br><small>by {}: {}</small>",
                            esc(u.by.as_deref().unwrap_or("")),
                            esc(&breakdown_text(u))
                        )
                    };
                    let _ = write!(
                        h,
                        "<tr><td {TD}>{}{breakdown}</td><td {TD}><b>{}</b>{}</td><td {TD}>{}</td><td {TD}>{}</td></tr>",
                        esc(&u.title),
                        esc(&opt(u.value, unit_of(u))),
                        esc(&target_text(u)),
                        esc(&opt(u.previous, unit_of(u))),
                        esc(&usage_change(u, u.value, u.previous))
                    );
                }
                h.push_str("</table>");
                charts_of(&mut h, "usage");
            }
            "database" => {
                heading(&mut h, "Database");
                let _ = write!(
                    h,
                    "<table style=\"border-collapse:collapse;width:100%\"><tr><th {TH}>query</th><th {TH}>total time</th><th {TH}>calls</th><th {TH}>mean</th><th {TH}>before</th></tr>"
                );
                for q in &r.database {
                    let _ = write!(
                        h,
                        "<tr><td {TD}>{}<br><small>{}</small></td><td {TD}>{}</td><td {TD}>{}</td><td {TD}><b>{}</b></td><td {TD}>{} {}</td></tr>",
                        esc(&q.query),
                        esc(&q.database),
                        q.total_ms
                            .map(|m| duration_text(m as i64))
                            .unwrap_or_else(|| "?".into()),
                        q.calls.map(short).unwrap_or_else(|| "?".into()),
                        esc(&opt(q.mean_ms, "ms")),
                        esc(&opt(q.previous_mean_ms, "ms")),
                        esc(&change(q.mean_ms, q.previous_mean_ms))
                    );
                }
                h.push_str("</table>");
                charts_of(&mut h, "database");
            }
            _ => {}
        }
    }
    heading(&mut h, "sloguard");
    let _ = write!(h, "<p>{}</p>", esc(&daemon_sentence(r)));
    h.push_str("</body></html>\n");
    h
}

/// The email of a report: subject, both parts, and the images base64-encoded for the store.
pub fn mail(r: &ReportData, to: &[String]) -> ReportMail {
    use base64::Engine as _;
    let images = images(r);
    let html = html(r, &images, |im| format!("cid:{}", im.cid));
    ReportMail {
        subject: format!(
            "{} — {}",
            r.title,
            local(r.window.from_ms, &r.timezone, false)
                + " to "
                + &local(r.window.to_ms - 1, &r.timezone, false)
        ),
        to: to.to_vec(),
        text: text(r),
        html,
        images: images
            .into_iter()
            .map(|im| {
                (
                    im.cid,
                    base64::engine::general_purpose::STANDARD.encode(im.png),
                )
            })
            .collect(),
    }
}

/// The HTML with its images inlined as `data:` URIs, to open from a file.
pub fn standalone_html(r: &ReportData) -> String {
    use base64::Engine as _;
    let images = images(r);
    html(r, &images, |im| {
        format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(&im.png)
        )
    })
}
