//! `trainer scan` results: a table and a plot of test scatter against the parameter.

use crate::plot::init_fonts;
use anyhow::{Result, anyhow};
use plotters::prelude::*;
use serde::Serialize;
use std::path::Path;

/// One trained point of a scan.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Value of the first parameter.
    pub x: String,
    /// Value of the second parameter, if any.
    pub y: Option<String>,
    /// Test scatter, dex.
    pub scatter: f64,
    /// Test bias, dex.
    pub bias: f64,
    /// Test NLL.
    pub nll: f64,
    /// MACs of the network.
    pub macs: u64,
}

/// Write `scan.json`, `scan.png` and return the table.
pub fn finish(out: &Path, p1: &str, p2: Option<&str>, rows: &[Row]) -> Result<String> {
    use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
    std::fs::create_dir_all(out)?;
    crate::fsutil::write_atomic(&out.join("scan.json"), &serde_json::to_vec_pretty(rows)?)?;
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    let mut header = vec![p1.to_string()];
    if let Some(p2) = p2 {
        header.push(p2.to_string());
    }
    header.extend([
        "test scatter (dex)".into(),
        "bias".into(),
        "NLL".into(),
        "MACs".into(),
    ]);
    t.set_header(header);
    for r in rows {
        let mut row = vec![r.x.clone()];
        if p2.is_some() {
            row.push(r.y.clone().unwrap_or_default());
        }
        row.extend([
            format!("{:.4}", r.scatter),
            format!("{:+.4}", r.bias),
            format!("{:.3}", r.nll),
            r.macs.to_string(),
        ]);
        t.add_row(row);
    }
    plot(out, p1, p2, rows)?;
    Ok(format!(
        "{t}\nscan written to {}/scan.json and scan.png\n",
        out.display()
    ))
}

fn plot(out: &Path, p1: &str, p2: Option<&str>, rows: &[Row]) -> Result<()> {
    crate::fsutil::atomically(&out.join("scan.png"), |path| draw(path, p1, p2, rows))
}

fn draw(path: &Path, p1: &str, p2: Option<&str>, rows: &[Row]) -> Result<()> {
    init_fonts();
    let e = |e: &dyn std::fmt::Display| anyhow!("plotting the scan: {e}");
    let root = BitMapBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    // Numeric x if every value parses, else categorical positions.
    let numeric: Option<Vec<f64>> = rows.iter().map(|r| r.x.parse::<f64>().ok()).collect();
    let xs: Vec<f64> = numeric.clone().unwrap_or_else(|| {
        rows.iter()
            .map(|r| first_index(rows, &r.x) as f64)
            .collect()
    });
    let log_x = numeric.is_some()
        && xs.iter().all(|v| *v > 0.0)
        && xs.iter().cloned().fold(0.0, f64::max) / xs.iter().cloned().fold(f64::MAX, f64::min)
            > 20.0;
    let tx = |v: f64| if log_x { v.log10() } else { v };
    let (x0, x1) = xs
        .iter()
        .map(|v| tx(*v))
        .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let (y0, y1) = rows
        .iter()
        .map(|r| r.scatter)
        .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let (xp, yp) = (0.05 * (x1 - x0).max(1.0), 0.1 * (y1 - y0).max(0.01));
    let mut c = ChartBuilder::on(&root)
        .caption(format!("test scatter vs {p1}"), ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((x0 - xp)..(x1 + xp), (y0 - yp)..(y1 + yp))
        .map_err(|x| e(&x))?;
    let labels: Vec<String> = rows.iter().map(|r| r.x.clone()).collect();
    let num = numeric.is_some();
    c.configure_mesh()
        .x_desc(if log_x {
            format!("log10 {p1}")
        } else {
            p1.to_string()
        })
        .y_desc("test scatter (dex)")
        .x_label_formatter(&|v| {
            if num {
                format!("{v:.3}")
            } else {
                labels.get(v.round() as usize).cloned().unwrap_or_default()
            }
        })
        .draw()
        .map_err(|x| e(&x))?;
    let mut groups: Vec<Option<String>> = Vec::new();
    for r in rows {
        if !groups.contains(&r.y) {
            groups.push(r.y.clone());
        }
    }
    for (k, g) in groups.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        let pts: Vec<(f64, f64)> = rows
            .iter()
            .zip(&xs)
            .filter(|(r, _)| &r.y == g)
            .map(|(r, x)| (tx(*x), r.scatter))
            .collect();
        let s = c
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|x| e(&x))?;
        if let (Some(p2), Some(v)) = (p2, g) {
            s.label(format!("{p2} = {v}")).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        }
        c.draw_series(pts.iter().map(|p| Circle::new(*p, 4, color.filled())))
            .map_err(|x| e(&x))?;
    }
    if p2.is_some() {
        c.configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()
            .map_err(|x| e(&x))?;
    }
    root.present().map_err(|x| e(&x))
}

fn first_index(rows: &[Row], x: &str) -> usize {
    let mut seen: Vec<&str> = Vec::new();
    for r in rows {
        if !seen.contains(&r.x.as_str()) {
            seen.push(&r.x);
        }
    }
    seen.iter().position(|s| *s == x).unwrap_or(0)
}
