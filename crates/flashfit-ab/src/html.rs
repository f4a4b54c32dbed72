//! `flashfit ab report --format html`: one self-contained page (inline SVG charts drawn with
//! `plotters`, no scripts, no external files): the SRM banner, per metric an interval plot of
//! every variant's value with its 95% interval and control's value as a line, and the table of
//! lifts and verdicts.

use plotters::prelude::*;

use crate::metrics::Metric;
use crate::report::Report;
use crate::{Error, Result};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The interval plot of one metric as an SVG document.
pub fn interval_svg(report: &Report, metric: Metric) -> Result<String> {
    let rows: Vec<(String, f64, f64, f64)> = report
        .variants
        .iter()
        .map(|v| {
            let (_, x) = v.metrics[&metric];
            (v.variant.clone(), x.value, x.ci_low, x.ci_high)
        })
        .collect();
    let finite: Vec<f64> = rows
        .iter()
        .flat_map(|r| [r.1, r.2, r.3])
        .filter(|x| x.is_finite())
        .collect();
    let (mut lo, mut hi) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(*x), b.max(*x))
        });
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.1).max(1e-9);
    let (lo, hi) = (lo - pad, hi + pad);
    let n = rows.len().max(1);
    let mut svg = String::new();
    {
        let plot_err = |e: &dyn std::fmt::Display| Error::Render(e.to_string());
        let height = 70 + 45 * n as u32;
        let root = SVGBackend::with_string(&mut svg, (720, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(&e))?;
        let names: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{} (95% intervals)", metric.as_str()),
                ("sans-serif", 16),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(120)
            .build_cartesian_2d(lo..hi, -0.5f64..(n as f64 - 0.5))
            .map_err(|e| plot_err(&e))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|y| {
                let i = y.round();
                if (y - i).abs() < 1e-6 && i >= 0.0 {
                    names.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_label_formatter(&|x| metric.format(*x))
            .draw()
            .map_err(|e| plot_err(&e))?;
        if let Some(c) = report
            .variants
            .iter()
            .find(|v| v.variant == report.control)
            .map(|v| v.metrics[&metric].1.value)
            .filter(|c| c.is_finite())
        {
            chart
                .draw_series(LineSeries::new(
                    [(c, -0.5), (c, n as f64 - 0.5)],
                    BLACK.mix(0.4).stroke_width(1),
                ))
                .map_err(|e| plot_err(&e))?;
        }
        let colour = |i: usize| Palette99::pick(i).to_rgba();
        chart
            .draw_series(
                rows.iter()
                    .enumerate()
                    .filter(|(_, r)| r.2.is_finite() && r.3.is_finite())
                    .map(|(i, r)| {
                        ErrorBar::new_horizontal(
                            i as f64,
                            r.2,
                            r.1,
                            r.3,
                            colour(i).stroke_width(2),
                            12,
                        )
                    }),
            )
            .map_err(|e| plot_err(&e))?;
        chart
            .draw_series(
                rows.iter()
                    .enumerate()
                    .filter(|(_, r)| r.1.is_finite())
                    .map(|(i, r)| Circle::new((r.1, i as f64), 4, colour(i).filled())),
            )
            .map_err(|e| plot_err(&e))?;
        root.present().map_err(|e| plot_err(&e))?;
    }
    Ok(svg)
}

/// The whole page.
pub fn page(report: &Report) -> Result<String> {
    let mut out = String::new();
    out.push_str("<!doctype html><html><head><meta charset=\"utf-8\">");
    out.push_str(&format!(
        "<title>A/B readout: {}</title>",
        esc(&report.experiment)
    ));
    out.push_str(
        "<style>body{font-family:sans-serif;margin:2em;max-width:60em}\
         table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;\
         padding:0.25em 0.6em;text-align:right}th{background:#f4f4f4}.srm{background:#c00;\
         color:#fff;padding:1em;font-weight:bold}.win{color:#070;font-weight:bold}\
         .loss{color:#b00;font-weight:bold}</style></head><body>",
    );
    out.push_str(&format!(
        "<h1>Experiment {}</h1><p>control <b>{}</b>; events {} .. {}; config {}; computed {}</p>",
        esc(&report.experiment),
        esc(&report.control),
        esc(report.from.as_deref().unwrap_or("start")),
        esc(report.to.as_deref().unwrap_or("now")),
        esc(&report.experiments_hash),
        esc(&report.computed_at)
    ));
    if report.srm.mismatch {
        out.push_str(&format!(
            "<p class=\"srm\">SAMPLE RATIO MISMATCH (chi-square p = {:.2e}): the users' split \
             is not what the weights promise. Do not trust this readout.</p>",
            report.srm.p_value
        ));
    }
    out.push_str("<table><tr><th>variant</th><th>weight</th><th>users</th><th>expected</th></tr>");
    for v in &report.variants {
        let expected = report
            .srm
            .counts
            .get(&v.variant)
            .map(|c| format!("{:.0}", c.1))
            .unwrap_or_default();
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{expected}</td></tr>",
            esc(&v.variant),
            v.weight.map(|w| w.to_string()).unwrap_or_default(),
            v.users
        ));
    }
    out.push_str(&format!(
        "</table><p>sample ratio check: chi-square {:.2}, p = {:.4}</p>",
        report.srm.chi2, report.srm.p_value
    ));
    for m in Metric::ALL {
        out.push_str(&format!("<h2>{}</h2>", m.as_str()));
        out.push_str(&interval_svg(report, m)?);
        out.push_str(
            "<table><tr><th>variant</th><th>lift</th><th>95% CI</th><th>p</th>\
             <th>verdict</th><th>MDE</th><th>guardrails</th></tr>",
        );
        for c in report.comparisons.iter().filter(|c| c.metric == m) {
            let class = match c.verdict {
                crate::report::Verdict::SignificantWin => "win",
                crate::report::Verdict::SignificantLoss => "loss",
                _ => "",
            };
            let guards: Vec<String> = c
                .guardrails
                .iter()
                .map(|g| format!("{}: {}", g.guardrail, if g.pass { "pass" } else { "FAIL" }))
                .collect();
            out.push_str(&format!(
                "<tr><td>{}</td><td>{:+.2}%</td><td>[{:+.2}%, {:+.2}%]</td><td>{:.4}</td>\
                 <td class=\"{class}\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(&c.variant),
                c.rel_lift.value * 100.0,
                c.rel_lift.ci_low * 100.0,
                c.rel_lift.ci_high * 100.0,
                c.p_value,
                c.verdict.as_str(),
                m.format(c.mde),
                esc(&guards.join("; "))
            ));
        }
        out.push_str("</table>");
    }
    for w in &report.warnings {
        out.push_str(&format!("<p>warning: {}</p>", esc(w)));
    }
    out.push_str("</body></html>\n");
    Ok(out)
}
