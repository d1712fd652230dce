//! The figures of `trainer explain`: one panel per cluster, the first layer's filters,
//! the feature maps of every convolution, and the population's radial profile. Signed
//! maps use a diverging scale symmetric about zero (blue lowers the predicted mass, red
//! raises it), unsigned ones magma; every map has its colour bar with units.

use super::population::RadialProfile;
use super::{Explanation, PLANE};
use crate::plot::{init_fonts, magma};
use crate::sim::{NPIX, spectrum::NBANDS};
use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

fn e<E: std::fmt::Display>(x: E) -> anyhow::Error {
    anyhow!("plotting: {x}")
}

/// Blue (-1) through white (0) to red (+1).
pub fn diverging(t: f64) -> RGBColor {
    let t = t.clamp(-1.0, 1.0);
    let (r, g, b) = if t < 0.0 {
        let f = -t;
        (1.0 - 0.8 * f, 1.0 - 0.6 * f, 1.0 - 0.15 * f)
    } else {
        (1.0 - 0.15 * t, 1.0 - 0.75 * t, 1.0 - 0.8 * t)
    };
    RGBColor((r * 255.0) as u8, (g * 255.0) as u8, (b * 255.0) as u8)
}

/// How a map's values become colours.
#[derive(Clone, Copy)]
pub enum Scale {
    /// magma on ln(1 + v) from 0 to the maximum.
    Log,
    /// magma, linear from 0 to the maximum.
    Linear,
    /// Diverging, symmetric about 0 to the largest |v|.
    Signed,
}

impl Scale {
    fn range(self, v: &[f64]) -> (f64, f64) {
        let max = v
            .iter()
            .copied()
            .filter(|x| x.is_finite())
            .fold(0.0f64, |a, x| a.max(x.abs()));
        let max = if max > 0.0 { max } else { 1.0 };
        match self {
            Scale::Signed => (-max, max),
            _ => (0.0, max),
        }
    }
    fn colour(self, v: f64, (lo, hi): (f64, f64)) -> RGBColor {
        match self {
            Scale::Log => magma((1.0 + v.max(0.0)).ln() / (1.0 + hi).ln()),
            Scale::Linear => magma((v - lo) / (hi - lo)),
            Scale::Signed => diverging(v / hi),
        }
    }
}

/// A `w x h` map (row-major, y up) with its colour bar labelled `unit`.
pub fn heatmap(
    area: &Area,
    title: &str,
    v: &[f64],
    w: usize,
    h: usize,
    scale: Scale,
    unit: &str,
) -> Result<()> {
    let (map_area, bar_area) = area.split_horizontally(area.dim_in_pixel().0.saturating_sub(118));
    let range = scale.range(v);
    let mut chart = ChartBuilder::on(&map_area)
        .caption(title, ("sans-serif", 15))
        .margin(6)
        .x_label_area_size(22)
        .y_label_area_size(28)
        .build_cartesian_2d(0..w as i32, 0..h as i32)
        .map_err(e)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .label_style(("sans-serif", 10))
        .draw()
        .map_err(e)?;
    chart
        .draw_series(
            (0..h)
                .flat_map(|y| (0..w).map(move |x| (x, y)))
                .map(|(x, y)| {
                    Rectangle::new(
                        [(x as i32, y as i32), (x as i32 + 1, y as i32 + 1)],
                        scale.colour(v[y * w + x], range).filled(),
                    )
                }),
        )
        .map_err(e)?;
    colour_bar(&bar_area, scale, range, unit)
}

fn colour_bar(area: &Area, scale: Scale, (lo, hi): (f64, f64), unit: &str) -> Result<()> {
    let mut bar = ChartBuilder::on(area)
        .margin_top(28)
        .margin_bottom(26)
        .margin_right(4)
        .margin_left(6)
        .y_label_area_size(72)
        .caption(unit, ("sans-serif", 11))
        .build_cartesian_2d(0.0..1.0, lo..hi)
        .map_err(e)?;
    let tiny = 1e-6 * lo.abs().max(hi.abs());
    bar.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_labels(5)
        .y_label_formatter(&|v| format_value(if v.abs() < tiny { 0.0 } else { *v }))
        .label_style(("sans-serif", 9))
        .draw()
        .map_err(e)?;
    let n = 64;
    bar.draw_series((0..n).map(|k| {
        let a = lo + (hi - lo) * k as f64 / n as f64;
        let b = lo + (hi - lo) * (k + 1) as f64 / n as f64;
        Rectangle::new(
            [(0.0, a), (1.0, b)],
            scale.colour(0.5 * (a + b), (lo, hi)).filled(),
        )
    }))
    .map_err(e)?;
    Ok(())
}

fn format_value(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e4).contains(&a) {
        format!("{v:.1e}")
    } else if a < 0.1 {
        format!("{v:.4}")
    } else {
        format!("{v:.2}")
    }
}

/// One cluster's panel: counts, occlusion (mass, sigma), saliency, integrated gradients,
/// per-band importance.
pub fn cluster_panel(x: &Explanation, band_edges: &[f64], patch: usize, out: &Path) -> Result<()> {
    crate::fsutil::atomically(out, |tmp| draw_panel(x, band_edges, patch, tmp))
}

fn draw_panel(x: &Explanation, band_edges: &[f64], patch: usize, out: &Path) -> Result<()> {
    init_fonts();
    let root = BitMapBackend::new(out, (1500, 960)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let truth = x.truth.map_or("unlabelled".to_string(), |t| {
        format!("true log M500 {t:.2}")
    });
    let title = format!(
        "cluster {}: z = {:.3}, {truth}, predicted {:.2} +/- {:.2} (background-only image: {:.2})",
        x.id, x.z, x.mu, x.sigma, x.mu_baseline
    );
    let (head, body) = root.split_vertically(36);
    head.titled(&title, ("sans-serif", 19)).map_err(e)?;
    let cells = body.split_evenly((2, 3));
    heatmap(
        &cells[0],
        "counts, all bands",
        &x.counts,
        NPIX,
        NPIX,
        Scale::Log,
        "counts",
    )?;
    heatmap(
        &cells[1],
        &format!("occlusion ({patch}x{patch} px -> background): d log M"),
        &x.occlusion_mu,
        NPIX,
        NPIX,
        Scale::Signed,
        "dex",
    )?;
    heatmap(
        &cells[2],
        "occlusion: d sigma",
        &x.occlusion_sigma,
        NPIX,
        NPIX,
        Scale::Signed,
        "dex",
    )?;
    heatmap(
        &cells[3],
        "saliency |d log M / d x|",
        &x.saliency,
        NPIX,
        NPIX,
        Scale::Linear,
        "dex per unit x",
    )?;
    let ig = x.ig_map();
    heatmap(
        &cells[4],
        &format!(
            "integrated gradients (sum {:+.3} dex)",
            ig.iter().sum::<f64>()
        ),
        &ig,
        NPIX,
        NPIX,
        Scale::Signed,
        "dex",
    )?;
    bands(&cells[5], &x.band_importance(), band_edges)?;
    root.present().map_err(e)
}

fn bands(area: &Area, v: &[f64; NBANDS], edges: &[f64]) -> Result<()> {
    let max = v.iter().fold(0.0f64, |a, x| a.max(x.abs())).max(1e-6) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption("integrated gradients per band", ("sans-serif", 15))
        .margin(8)
        .x_label_area_size(34)
        .y_label_area_size(64)
        .build_cartesian_2d(0..NBANDS as i32, -max..max)
        .map_err(e)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(NBANDS)
        .x_label_formatter(&|b| {
            edges
                .get(*b as usize)
                .map_or(String::new(), |e| format!("{e}"))
        })
        .x_desc("band lower edge (keV)")
        .y_desc("dex")
        .y_labels(7)
        .light_line_style(WHITE)
        .y_label_formatter(&|v| format_value(if v.abs() < 1e-6 * max { 0.0 } else { *v }))
        .label_style(("sans-serif", 10))
        .draw()
        .map_err(e)?;
    chart
        .draw_series(v.iter().enumerate().map(|(b, &c)| {
            let colour = if c >= 0.0 {
                RGBColor(200, 70, 60)
            } else {
                RGBColor(60, 100, 190)
            };
            Rectangle::new([(b as i32, 0.0), (b as i32 + 1, c)], colour.filled())
        }))
        .map_err(e)?;
    Ok(())
}

/// A grid of small maps (`tiles[k]`, each `w x h`), each on its own scale, with captions.
#[allow(clippy::too_many_arguments)]
fn grid(
    out: &Path,
    title: &str,
    tiles: &[(String, Vec<f64>)],
    w: usize,
    h: usize,
    cols: usize,
    scale: Scale,
    shared: bool,
) -> Result<()> {
    crate::fsutil::atomically(out, |tmp| {
        init_fonts();
        let rows = tiles.len().div_ceil(cols).max(1);
        let cell = 96u32;
        let root = BitMapBackend::new(
            tmp,
            (cols as u32 * cell + 90, rows as u32 * (cell + 14) + 40),
        )
        .into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        let (head, body) = root.split_vertically(40);
        head.titled(title, ("sans-serif", 16)).map_err(e)?;
        let (body, bar) = body.split_horizontally(cols as u32 * cell);
        let all: Vec<f64> = tiles.iter().flat_map(|t| t.1.iter().copied()).collect();
        let global = scale.range(&all);
        let areas = body.split_evenly((rows, cols));
        for (area, (name, v)) in areas.iter().zip(tiles) {
            let range = if shared { global } else { scale.range(v) };
            let (cap, img) = area.split_vertically(14);
            cap.draw(&Text::new(name.clone(), (2, 1), ("sans-serif", 10)))
                .map_err(e)?;
            let (pw, ph) = img.dim_in_pixel();
            let (sx, sy) = (pw as f64 / w as f64, ph as f64 / h as f64);
            let s = sx.min(sy);
            for y in 0..h {
                for x in 0..w {
                    // Row 0 at the bottom, as in the maps of the cluster panel.
                    let (x0, y0) = ((x as f64 * s) as i32, ((h - 1 - y) as f64 * s) as i32);
                    let (x1, y1) = (((x + 1) as f64 * s) as i32, ((h - y) as f64 * s) as i32);
                    img.draw(&Rectangle::new(
                        [(x0, y0), (x1, y1)],
                        scale.colour(v[y * w + x], range).filled(),
                    ))
                    .map_err(e)?;
                }
            }
        }
        if shared {
            colour_bar(&bar, scale, global, "weight")?;
        }
        root.present().map_err(e)
    })
}

/// The first convolution's filters: one row per filter, one tile per input band, on one
/// symmetric scale.
pub fn filters(out: &Path, w: &[f32], dims: [usize; 4], band_edges: &[f64]) -> Result<()> {
    let [f, c, kh, kw] = dims;
    let mut tiles = Vec::with_capacity(f * c);
    for fi in 0..f {
        for ci in 0..c {
            let o = (fi * c + ci) * kh * kw;
            let v = w[o..o + kh * kw].iter().map(|&x| f64::from(x)).collect();
            let band = band_edges
                .get(ci)
                .map_or(format!("in {ci}"), |e| format!("{e} keV"));
            tiles.push((format!("f{fi} {band}"), v));
        }
    }
    grid(
        out,
        &format!("first convolution: {f} filters x {c} input bands, {kh}x{kw} (blue < 0 < red)"),
        &tiles,
        kw,
        kh,
        c,
        Scale::Signed,
        true,
    )
}

/// The feature maps of one convolution block for one cluster, each channel on its own scale.
pub fn feature_maps(out: &Path, layer: usize, v: &[f32], dims: [usize; 3], id: &str) -> Result<()> {
    let [c, h, w] = dims;
    let tiles: Vec<(String, Vec<f64>)> = (0..c)
        .map(|k| {
            (
                format!("channel {k}"),
                v[k * h * w..(k + 1) * h * w]
                    .iter()
                    .map(|&x| f64::from(x))
                    .collect(),
            )
        })
        .collect();
    grid(
        out,
        &format!(
            "cluster {id}: feature maps of convolution block {layer} ({c} x {h} x {w}), each channel on its own scale"
        ),
        &tiles,
        w,
        h,
        8.min(c.max(1)),
        Scale::Linear,
        false,
    )
}

/// Mean normalised |attribution| per pixel against radius, one line per group, with the
/// net counts' profile of the whole sample for comparison.
pub fn radial(out: &Path, p: &RadialProfile) -> Result<()> {
    crate::fsutil::atomically(out, |tmp| {
        init_fonts();
        let root = BitMapBackend::new(tmp, (1400, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        let halves = root.split_evenly((1, 2));
        let nb = p.edges.len() - 1;
        // Bin centres (the open last bin drawn at 1.25 x its lower edge).
        let xs: Vec<f64> = (0..nb)
            .map(|k| {
                let (a, b) = (p.edges[k], p.edges[k + 1]);
                if b.is_finite() {
                    0.5 * (a + b)
                } else {
                    a * 1.25
                }
            })
            .collect();
        let xmax = xs.last().copied().unwrap_or(1.0) * 1.1;
        let morph = [
            "all",
            "cool core",
            "disturbed",
            "relaxed, no cool core",
            "central AGN",
        ];
        let mass: Vec<&str> = p
            .groups
            .iter()
            .map(|g| g.name.as_str())
            .filter(|n| n.starts_with("log M"))
            .collect();
        let colours = [
            BLACK,
            RGBColor(200, 60, 50),
            RGBColor(50, 100, 200),
            RGBColor(40, 150, 80),
            RGBColor(160, 90, 180),
        ];
        for (area, (title, names)) in halves.iter().zip([
            ("by morphology", morph.to_vec()),
            (
                "by mass",
                std::iter::once("all").chain(mass.iter().copied()).collect(),
            ),
        ]) {
            let groups: Vec<_> = p
                .groups
                .iter()
                .filter(|g| names.contains(&g.name.as_str()))
                .collect();
            let vals = groups
                .iter()
                .flat_map(|g| g.density.iter().copied())
                .chain(
                    p.groups
                        .first()
                        .into_iter()
                        .flat_map(|g| g.count_density.iter().copied()),
                )
                .filter(|v| v.is_finite() && *v > 0.0);
            let (ymin, ymax) = vals.fold((f64::INFINITY, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
            let (ymin, ymax) = if ymax > 0.0 {
                (ymin * 0.7, ymax * 1.5)
            } else {
                (1e-6, 1.0)
            };
            let mut chart = ChartBuilder::on(area)
                .caption(
                    format!("mean |integrated gradients| per pixel, {title}"),
                    ("sans-serif", 16),
                )
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(64)
                .build_cartesian_2d(0.0..xmax, (ymin..ymax).log_scale())
                .map_err(e)?;
            chart
                .configure_mesh()
                .x_desc(format!("radius ({})", p.unit))
                .y_desc("fraction of the cluster's total per pixel")
                .y_label_formatter(&|v| format!("{v:.0e}"))
                .label_style(("sans-serif", 11))
                .draw()
                .map_err(e)?;
            for (g, c) in groups.iter().zip(colours.iter().cycle()) {
                let pts: Vec<(f64, f64)> = xs
                    .iter()
                    .copied()
                    .zip(g.density.iter().copied())
                    .filter(|(_, v)| v.is_finite() && *v > 0.0)
                    .collect();
                chart
                    .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                    .map_err(e)?
                    .label(format!("{} (N = {})", g.name, g.n))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                    });
                chart
                    .draw_series(pts.iter().map(|&(x, y)| Circle::new((x, y), 3, c.filled())))
                    .map_err(e)?;
            }
            if let Some(all) = p.groups.first() {
                let pts: Vec<(f64, f64)> = xs
                    .iter()
                    .copied()
                    .zip(all.count_density.iter().copied())
                    .filter(|(_, v)| v.is_finite() && *v > 0.0)
                    .collect();
                let grey = RGBColor(140, 140, 140);
                chart
                    .draw_series(DashedLineSeries::new(pts, 6, 4, grey.stroke_width(2)))
                    .map_err(e)?
                    .label("net counts per pixel, all (for comparison)")
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], grey.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 11))
                .draw()
                .map_err(e)?;
        }
        root.present().map_err(e)
    })
}

/// Band-summed values of a `[band][y][x]` cube.
pub fn band_sum(v: &[f64]) -> Vec<f64> {
    (0..PLANE)
        .map(|p| (0..NBANDS).map(|b| v[b * PLANE + p]).sum())
        .collect()
}
