//! PNG figures (plotters, bitmap backend, embedded DejaVu Sans so plots render
//! identically on any machine without system fonts).

use crate::data::Dataset;
use crate::sim::NPIX;
use crate::sim::spectrum::NBANDS;
use anyhow::{Result, anyhow};
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Register the embedded font under "sans-serif" (idempotent).
pub fn init_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Perceptually ordered colour map (a compact approximation of matplotlib's "magma").
pub fn magma(t: f64) -> RGBColor {
    const STOPS: [(f64, (u8, u8, u8)); 6] = [
        (0.0, (0, 0, 4)),
        (0.2, (59, 15, 112)),
        (0.4, (140, 41, 129)),
        (0.6, (222, 73, 104)),
        (0.8, (254, 159, 109)),
        (1.0, (252, 253, 191)),
    ];
    let t = t.clamp(0.0, 1.0);
    let k = STOPS
        .iter()
        .position(|s| s.0 >= t)
        .unwrap_or(STOPS.len() - 1)
        .max(1);
    let (t0, c0) = STOPS[k - 1];
    let (t1, c1) = STOPS[k];
    let f = (t - t0) / (t1 - t0);
    let lerp = |a: u8, b: u8| (f64::from(a) + f * (f64::from(b) - f64::from(a))).round() as u8;
    RGBColor(lerp(c0.0, c1.0), lerp(c0.1, c1.1), lerp(c0.2, c1.2))
}

/// Draw `indices` clusters: the band-summed image (log stretch) and the counts per band.
pub fn preview(ds: &Dataset, indices: &[usize], out: &Path) -> Result<()> {
    crate::fsutil::atomically(out, |tmp| draw_preview(ds, indices, tmp))
}

fn draw_preview(ds: &Dataset, indices: &[usize], out: &Path) -> Result<()> {
    init_fonts();
    let cols = indices.len().clamp(1, 3);
    let rows = indices.len().div_ceil(cols).max(1);
    let (cell_w, cell_h) = (420u32, 620u32);
    let root =
        BitMapBackend::new(out, (cell_w * cols as u32, cell_h * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let cells = root.split_evenly((rows, cols));
    let edges = ds.band_edges_kev();
    for (cell, &i) in cells.iter().zip(indices) {
        let img = ds.image(i);
        let mut summed = vec![0u32; NPIX * NPIX];
        let mut per_band = [0u64; NBANDS];
        for b in 0..NBANDS {
            for p in 0..NPIX * NPIX {
                let v = img[b * NPIX * NPIX + p];
                summed[p] += u32::from(v);
                per_band[b] += u64::from(v);
            }
        }
        let mut title = format!("z = {:.2}", ds.redshift[i]);
        if let Some(m) = &ds.log_mass {
            title = format!("log M500 = {:.2}, {title}", m[i]);
        }
        if let Some(t) = &ds.truth {
            if t.cool_core.get(i) == Some(&1) {
                title.push_str(", cool core");
            }
            if t.disturbed.get(i) == Some(&1) {
                title.push_str(", disturbed");
            }
        }
        let (top, bottom) = cell.split_vertically(430);
        let vmax = (*summed.iter().max().unwrap_or(&1)).max(1) as f64;
        let mut chart = ChartBuilder::on(&top)
            .caption(&title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(30)
            .build_cartesian_2d(0..NPIX as i32, 0..NPIX as i32)
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("x (pixel)")
            .label_style(("sans-serif", 11))
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .draw_series(
                (0..NPIX)
                    .flat_map(|y| (0..NPIX).map(move |x| (x, y)))
                    .map(|(x, y)| {
                        let v = f64::from(summed[y * NPIX + x]);
                        let c = magma((1.0 + v).ln() / (1.0 + vmax).ln());
                        Rectangle::new(
                            [(x as i32, y as i32), (x as i32 + 1, y as i32 + 1)],
                            c.filled(),
                        )
                    }),
            )
            .map_err(|e| anyhow!("{e}"))?;
        let ymax = (*per_band.iter().max().unwrap_or(&1)).max(1) as f64 * 1.15;
        let mut bars = ChartBuilder::on(&bottom)
            .caption("counts per band", ("sans-serif", 13))
            .margin(8)
            .x_label_area_size(34)
            .y_label_area_size(44)
            .build_cartesian_2d(0..NBANDS as i32, 0.0..ymax)
            .map_err(|e| anyhow!("{e}"))?;
        bars.configure_mesh()
            .disable_x_mesh()
            .x_labels(NBANDS)
            .x_label_formatter(&|b| {
                edges
                    .get(*b as usize)
                    .map_or(String::new(), |e| format!("{e}"))
            })
            .x_desc("band lower edge (keV)")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style(("sans-serif", 10))
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        bars.draw_series(per_band.iter().enumerate().map(|(b, &c)| {
            Rectangle::new(
                [(b as i32, 0.0), (b as i32 + 1, c as f64)],
                RGBColor(70, 110, 180).filled(),
            )
        }))
        .map_err(|e| anyhow!("{e}"))?;
    }
    root.present()
        .map_err(|e| anyhow!("writing {}: {e}", out.display()))?;
    Ok(())
}
