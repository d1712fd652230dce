//! The population view: where, on average, the network's attribution lies.
//!
//! Each cluster's |integrated gradients| (summed over bands) is normalised to a total of
//! one, so that bright clusters do not dominate, and averaged per pixel in annuli of
//! radius r / r500 (from the simulator's `theta500_arcmin` truth column; in pixels when
//! the dataset has none). Beside it, the same for the cluster's net counts (counts minus
//! the expected background): where the photons are. A network that down-weights the
//! core puts a smaller share of its attribution inside 0.15 r500 than the share of the
//! photons there.

use super::{Explanation, PLANE};
use crate::data::Dataset;
use crate::sim::{NPIX, spectrum::NBANDS};
use serde::Serialize;

/// Radius bins in units of r500 (the last is open).
pub const R500_EDGES: [f64; 10] = [0.0, 0.15, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, f64::INFINITY];
/// Radius bins in pixels, when r500 is unknown.
pub const PIXEL_EDGES: [f64; 10] = [
    0.0,
    2.0,
    4.0,
    6.0,
    8.0,
    11.0,
    14.0,
    18.0,
    25.0,
    f64::INFINITY,
];
/// The core: inside 0.15 r500 (the radius core-excised luminosities exclude), or 2 pixels.
pub const CORE_BINS: usize = 1;

/// One group of clusters in the profile.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    /// Name ("all", "cool core", "14.0-14.5", ...).
    pub name: String,
    /// Clusters in the group.
    pub n: usize,
    /// Mean normalised |attribution| per pixel in each annulus.
    pub density: Vec<f64>,
    /// Mean share of |attribution| in each annulus (sums to 1).
    pub share: Vec<f64>,
    /// Mean share of net counts in each annulus.
    pub count_share: Vec<f64>,
    /// Mean share of net counts per pixel in each annulus.
    pub count_density: Vec<f64>,
    /// Mean share of |attribution| inside 2 pixels of the centre (where a central AGN is).
    pub centre_share: f64,
}

/// Attribution against radius, for the whole sample and split by morphology, mass and
/// central AGN.
#[derive(Debug, Clone, Serialize)]
pub struct RadialProfile {
    /// Bin edges.
    pub edges: Vec<f64>,
    /// "r500" or "pixels".
    pub unit: String,
    /// The groups, "all" first.
    pub groups: Vec<Group>,
}

/// Mass bins of the profile (log10 M500c / Msun).
pub const MASS_EDGES: [f64; 4] = [f64::NEG_INFINITY, 14.0, 14.5, f64::INFINITY];

struct One {
    density: Vec<f64>,
    share: Vec<f64>,
    count_share: Vec<f64>,
    count_density: Vec<f64>,
    centre_share: f64,
}

fn one(e: &Explanation, ds: &Dataset, edges: &[f64], scale_pix: f64, bkg: &[f32; NBANDS]) -> One {
    let nb = edges.len() - 1;
    let a: Vec<f64> = e.ig_map().iter().map(|v| v.abs()).collect();
    let total: f64 = a.iter().sum::<f64>().max(f64::MIN_POSITIVE);
    let bkg_sum: f64 = bkg.iter().map(|&b| f64::from(b)).sum();
    let img = ds.image(e.index);
    let (mut att, mut cnt, mut pix) = (vec![0.0; nb], vec![0.0; nb], vec![0usize; nb]);
    let mut centre = 0.0;
    let c = NPIX as f64 / 2.0;
    for p in 0..PLANE {
        let (y, x) = ((p / NPIX) as f64 + 0.5, (p % NPIX) as f64 + 0.5);
        let r_pix = (y - c).hypot(x - c);
        let r = r_pix / scale_pix;
        let k = edges
            .windows(2)
            .position(|w| r >= w[0] && r < w[1])
            .unwrap_or(nb - 1);
        att[k] += a[p] / total;
        let counts: f64 = (0..NBANDS).map(|b| f64::from(img[b * PLANE + p])).sum();
        cnt[k] += counts - bkg_sum;
        pix[k] += 1;
        if r_pix < 2.0 {
            centre += a[p] / total;
        }
    }
    let net: f64 = cnt
        .iter()
        .map(|v: &f64| v.max(0.0))
        .sum::<f64>()
        .max(f64::MIN_POSITIVE);
    One {
        density: att
            .iter()
            .zip(&pix)
            .map(|(v, &n)| if n > 0 { v / n as f64 } else { f64::NAN })
            .collect(),
        share: att,
        count_density: cnt
            .iter()
            .zip(&pix)
            .map(|(v, &n)| {
                if n > 0 {
                    v.max(0.0) / net / n as f64
                } else {
                    f64::NAN
                }
            })
            .collect(),
        count_share: cnt.iter().map(|v| v.max(0.0) / net).collect(),
        centre_share: centre,
    }
}

/// The profile of `explained` clusters of `ds` (integrated gradients already computed),
/// with `background[i]` the expected background of each.
pub fn radial_profile(
    ds: &Dataset,
    explained: &[Explanation],
    background: &[[f32; NBANDS]],
) -> RadialProfile {
    let theta = ds
        .truth
        .as_ref()
        .map(|t| &t.theta500_arcmin)
        .filter(|t| !t.is_empty());
    let (edges, unit): (Vec<f64>, &str) = match theta {
        Some(_) => (R500_EDGES.to_vec(), "r500"),
        None => (PIXEL_EDGES.to_vec(), "pixels"),
    };
    let pix_arcsec = ds.pixel_arcsec();
    let ones: Vec<One> = explained
        .iter()
        .zip(background)
        .map(|(e, b)| {
            let scale = theta.map_or(1.0, |t| f64::from(t[e.index]) * 60.0 / pix_arcsec);
            one(e, ds, &edges, scale.max(1e-6), b)
        })
        .collect();
    let flag = |name: &str, i: usize| -> Option<bool> {
        let t = ds.truth.as_ref()?;
        let v = match name {
            "cool_core" => &t.cool_core,
            "disturbed" => &t.disturbed,
            "central_agn" => &t.central_agn,
            _ => return None,
        };
        v.get(i).map(|&x| x == 1)
    };
    type Keep<'a> = Box<dyn Fn(&Explanation) -> bool + 'a>;
    let mut defs: Vec<(String, Keep)> = vec![("all".into(), Box::new(|_| true))];
    if ds.truth.is_some() {
        defs.push((
            "cool core".into(),
            Box::new(move |e| {
                flag("cool_core", e.index) == Some(true) && flag("disturbed", e.index) != Some(true)
            }),
        ));
        defs.push((
            "disturbed".into(),
            Box::new(move |e| flag("disturbed", e.index) == Some(true)),
        ));
        defs.push((
            "relaxed, no cool core".into(),
            Box::new(move |e| {
                flag("cool_core", e.index) == Some(false)
                    && flag("disturbed", e.index) == Some(false)
            }),
        ));
        defs.push((
            "central AGN".into(),
            Box::new(move |e| flag("central_agn", e.index) == Some(true)),
        ));
        defs.push((
            "no central AGN".into(),
            Box::new(move |e| flag("central_agn", e.index) == Some(false)),
        ));
    }
    if ds.log_mass.is_some() {
        for w in MASS_EDGES.windows(2) {
            let (lo, hi) = (w[0], w[1]);
            let name = match (lo.is_finite(), hi.is_finite()) {
                (false, _) => format!("log M < {hi:.1}"),
                (_, false) => format!("log M >= {lo:.1}"),
                _ => format!("log M {lo:.1}-{hi:.1}"),
            };
            defs.push((
                name,
                Box::new(move |e| e.truth.is_some_and(|m| m >= lo && m < hi)),
            ));
        }
    }
    let nb = edges.len() - 1;
    let groups = defs
        .into_iter()
        .filter_map(|(name, keep)| {
            let members: Vec<&One> = explained
                .iter()
                .zip(&ones)
                .filter(|(e, _)| keep(e))
                .map(|(_, o)| o)
                .collect();
            if members.is_empty() {
                return None;
            }
            let n = members.len() as f64;
            // Means over the clusters that have pixels in the annulus (a small cluster's
            // innermost annuli may hold no pixel centre).
            let mean = |f: &dyn Fn(&One) -> &Vec<f64>| -> Vec<f64> {
                (0..nb)
                    .map(|k| {
                        let v: Vec<f64> = members
                            .iter()
                            .map(|o| f(o)[k])
                            .filter(|v| v.is_finite())
                            .collect();
                        if v.is_empty() {
                            f64::NAN
                        } else {
                            v.iter().sum::<f64>() / v.len() as f64
                        }
                    })
                    .collect()
            };
            Some(Group {
                name,
                n: members.len(),
                density: mean(&|o| &o.density),
                share: mean(&|o| &o.share),
                count_share: mean(&|o| &o.count_share),
                count_density: mean(&|o| &o.count_density),
                centre_share: members.iter().map(|o| o.centre_share).sum::<f64>() / n,
            })
        })
        .collect();
    RadialProfile {
        edges,
        unit: unit.into(),
        groups,
    }
}

impl RadialProfile {
    /// The table: per group, the share of attribution in each annulus, and the core's
    /// share of attribution against its share of net counts.
    pub fn table(&self) -> String {
        use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        let label = |k: usize| {
            let (a, b) = (self.edges[k], self.edges[k + 1]);
            if b.is_finite() {
                format!("{a}-{b}")
            } else {
                format!(">{a}")
            }
        };
        let mut header = vec![
            "group".to_string(),
            "N".into(),
            format!(
                "core |attr| share (< {} {})",
                self.edges[CORE_BINS], self.unit
            ),
            "core net-count share".into(),
        ];
        header.extend((0..self.edges.len() - 1).map(|k| format!("{} {}", label(k), self.unit)));
        t.set_header(header);
        for g in &self.groups {
            let core: f64 = g.share[..CORE_BINS].iter().sum();
            let core_counts: f64 = g.count_share[..CORE_BINS].iter().sum();
            let mut row = vec![
                g.name.clone(),
                g.n.to_string(),
                format!("{:.1} %", 100.0 * core),
                format!("{:.1} %", 100.0 * core_counts),
            ];
            row.extend(g.share.iter().map(|s| format!("{:.1} %", 100.0 * s)));
            t.add_row(row);
        }
        t.to_string()
    }
}
